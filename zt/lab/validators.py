"""Independent validators for every certificate a run issued.

Three opinions that do not share code with our CA: `openssl verify` (RFC 5280 path validation
against the trust bundle, with the purposes a TLS client and server check), pkilint's RFC 5280
certificate linter, and our own X509-SVID rule checker (zt.svid).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from cryptography import x509

from zt import svid

# pkilint's URI check accepts web schemes only, so it reports every spiffe:// SAN as invalid
# URI syntax. That is a false positive for SVIDs (docs/svid-rules.md, "Outside validators"): we allow
# exactly that finding code, and only when the URI it names is a spiffe:// URI.
PKILINT_ALLOWED = {"pkix.invalid_uri_syntax": 'Invalid URI syntax: "spiffe://'}
PKILINT_SEVERITY = "WARNING"  # report warnings and above; anything not allow-listed fails


def pkilint_command() -> list[str]:
    exe = Path(sys.executable).with_name("lint_pkix_cert")
    return [str(exe)] if exe.exists() else [shutil.which("lint_pkix_cert") or "lint_pkix_cert"]


def openssl_verify(cert_pem: Path, bundle: Path, intermediate: Path) -> str:
    is_ca = _is_ca(cert_pem)
    # -no-CApath -no-CAstore: with only -CAfile, openssl verify also trusts the system's CA
    # directory (/etc/ssl/certs, SSL_CERT_DIR); our certificates must chain to the bundle alone.
    args = ["openssl", "verify", "-x509_strict", "-no-CApath", "-no-CAstore", "-CAfile", str(bundle)]
    if not is_ca:
        args += ["-untrusted", str(intermediate), "-purpose", "sslclient"]
    r = subprocess.run([*args, str(cert_pem)], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        return (r.stdout + r.stderr).strip().replace("\n", " | ")[:300]
    if not is_ca:
        r = subprocess.run(
            [*args[:-2], "-purpose", "sslserver", str(cert_pem)], capture_output=True, text=True, timeout=30
        )
        if r.returncode != 0:
            return "sslserver: " + (r.stdout + r.stderr).strip()[:300]
    return "ok"


def pkilint(cert_pem: Path) -> str:
    r = subprocess.run(
        [*pkilint_command(), "lint", "-s", PKILINT_SEVERITY, "-f", "JSON", str(cert_pem)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    try:
        doc = json.loads(r.stdout)
    except ValueError:
        return f"pkilint did not run: {r.stderr.strip()[:300]}"
    bad = []
    for result in doc.get("results", []):
        for f in result.get("finding_descriptions", []):
            allowed = PKILINT_ALLOWED.get(f.get("code", ""))
            if allowed and str(f.get("message", "")).startswith(allowed):
                continue
            bad.append(f"{f.get('code')} ({f.get('severity')}): {f.get('message')}")
    return "ok" if not bad else "; ".join(bad)[:500]


def _is_ca(cert_pem: Path) -> bool:
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def svid_rules(cert_pem: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    findings = svid.check_ca(cert) if _is_ca(cert_pem) else svid.check_leaf(cert)
    return "ok" if not findings else "; ".join(map(str, findings))


def validate_all(pem: str, bundle: Path, intermediate: Path) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "cert.pem"
        p.write_text(pem)
        return {
            "openssl_verify": openssl_verify(p, bundle, intermediate),
            "pkilint": pkilint(p),
            "svid_rules": svid_rules(p),
        }
