"""Independent validators for every certificate and CRL a run issued.

Three opinions on certificates that do not share code with our CA: `openssl verify` (RFC 5280
path validation against the trust bundle, with the purposes a TLS client and server check),
pkilint's RFC 5280 certificate linter, and our own X509-SVID rule checker (zt.svid). CRLs get
pkilint's RFC 5280 CRL linter plus the one RFC 5280 date rule it does not check (`lint_crl`).
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

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


@functools.cache
def _pkilint_crl_validator() -> Any:
    """pkilint's RFC 5280 CRL validator, as its `lint_crl lint -t CRL -p PKIX` builds it.

    Built in-process once (pkilint's import and set-up take seconds on a loaded machine; a
    run lints every CRL it produced, so the console script's per-file start-up would dominate).
    """
    from pkilint import pkix  # type: ignore[import-untyped]  # no py.typed: treated as Any
    from pkilint.pkix import crl, extension, name  # type: ignore[import-untyped]

    return crl.create_pkix_crl_validator_container(
        [
            pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
            pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
        ],
        [
            crl.create_issuer_validator_container([]),
            crl.create_validity_validator_container([]),
            crl.create_extensions_validator_container([]),
        ],
    )


def _entries_after_this_update(der: bytes) -> list[str]:
    """RFC 5280 5.1.2.4 and 5.1.2.6: thisUpdate is the CRL's issue date and revocationDate the
    date the revocation occurred, so no entry can be dated after the CRL that lists it.
    pkilint 0.13 does not check this (it found nothing in the CRLs that had the defect, issue 11);
    read here with `cryptography`, not with our CA's code."""
    crl = x509.load_der_x509_crl(der)
    return [
        f"zt.crl_revocation_date_after_this_update (ERROR): serial {entry.serial_number:x} revoked at "
        f"{entry.revocation_date_utc.isoformat()}, after thisUpdate {crl.last_update_utc.isoformat()}"
        for entry in crl
        if entry.revocation_date_utc > crl.last_update_utc
    ]


def lint_crl(der: bytes) -> str:
    """pkilint's RFC 5280 CRL linter (PKIX profile, a CRL not an ARL) plus the revocation-date rule.

    "ok", or the findings at WARNING and above, `; `-joined, as `pkilint` does for certificates.
    No pkilint finding is allow-listed for CRLs: our CRLs (empty, and with entries with and
    without a reason code) have none at any severity, so any finding is news.
    """
    from pkilint import loader, validation

    try:
        doc = loader.load_der_crl(der, "crl")
    except ValueError as e:  # pkilint: not DER, or SubstrateDecodingFailedError (a ValueError)
        return f"pkilint could not load the CRL: {type(e).__name__}: {str(e)[:200]}"
    bad = []
    for result in _pkilint_crl_validator().validate(doc.root):
        for f in result.finding_descriptions:
            if f.finding.severity <= validation.ValidationFindingSeverity.WARNING:
                where = result.node.path
                bad.append(f"{f.finding.code} ({f.finding.severity.name}) at {where}: {f.message or ''}".rstrip(": "))
    try:
        bad += _entries_after_this_update(der)
    except ValueError as e:
        bad.append(f"not a DER CRL: {e}")
    return "ok" if not bad else "; ".join(bad)[:1000]


def validate_all(pem: str, bundle: Path, intermediate: Path) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "cert.pem"
        p.write_text(pem)
        return {
            "openssl_verify": openssl_verify(p, bundle, intermediate),
            "pkilint": pkilint(p),
            "svid_rules": svid_rules(p),
        }
