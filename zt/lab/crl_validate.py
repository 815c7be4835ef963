"""Independent validators for every CRL a run produced (as zt.lab.validators is for certificates).

Two opinions that share no code with our CA: pkilint's RFC 5280 CRL linter plus the
revocation-date rule (`zt.lab.validators.lint_crl`), and `openssl crl -verify` against the
intermediate that signs the leaves' CRLs (RFC 5280 6.3.3 (f): the CRL's signature must verify
with the issuer's key). Each answers "ok" or a short text saying what is wrong.

pkilint parses with pyasn1, which is slow on large CRLs (~30 s of CPU for 100 000 entries on
an idle core, measured; over 2 min on this shared machine): a scenario lints the few large
CRLs it made, once each, after its measurements.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from zt.lab import validators


def openssl_crl_verify(der_file: Path, issuer: Path) -> str:
    """`openssl crl -verify`: the signature checks out with exactly `issuer`'s key."""
    r = subprocess.run(
        ["openssl", "crl", "-inform", "DER", "-in", str(der_file), "-CAfile", str(issuer), "-verify", "-noout"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = (r.stdout + r.stderr).strip()
    if r.returncode != 0 or "verify OK" not in out:
        return out.replace("\n", " | ")[:300] or f"exit {r.returncode}"
    return "ok"


def validate_crl(der: bytes, issuer: Path) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "crl.der"
        p.write_bytes(der)
        return {"pkilint": validators.lint_crl(der), "openssl_crl_verify": openssl_crl_verify(p, issuer)}
