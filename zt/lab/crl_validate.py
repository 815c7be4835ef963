"""Independent validators for every CRL a run produced (as zt.lab.validators is for certificates).

Two opinions that share no code with our CA: pkilint's RFC 5280 CRL linter (`lint_crl`, PKIX
profile, type CRL), and `openssl crl -verify` against the intermediate that signs the leaves'
CRLs (RFC 5280 6.3.3 (f): the CRL's signature must verify with the issuer's key). Each answers
"ok" or a short text saying what is wrong.

pkilint parses with pyasn1, which is slow on large CRLs (~30 s of CPU for 100 000 entries,
measured): a scenario lints the few large CRLs it made, once each, after its measurements.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PKILINT_SEVERITY = "WARNING"  # report warnings and above; any finding fails


def lint_crl_command() -> list[str]:
    exe = Path(sys.executable).with_name("lint_crl")
    return [str(exe)] if exe.exists() else [shutil.which("lint_crl") or "lint_crl"]


def pkilint_crl(der_file: Path, timeout: float = 600) -> str:
    r = subprocess.run(
        [*lint_crl_command(), "lint", "-t", "CRL", "-p", "PKIX", "-s", PKILINT_SEVERITY, "-f", "JSON", str(der_file)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    try:
        doc = json.loads(r.stdout)
    except ValueError:
        return f"pkilint did not run: {r.stderr.strip()[:300]}"
    bad = [
        f"{f.get('code')} ({f.get('severity')}): {f.get('message')}"
        for result in doc.get("results", [])
        for f in result.get("finding_descriptions", [])
    ]
    return "ok" if not bad else "; ".join(bad)[:500]


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
        return {"pkilint": pkilint_crl(p), "openssl_crl_verify": openssl_crl_verify(p, issuer)}
