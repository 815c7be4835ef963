"""An X509-SVID conformance checker: one function per role, one finding per broken rule.

It encodes every MUST of the SPIFFE X509-SVID standard (see docs/svid-rules.md),
so our CA's profiles are checked by something other than the code that built them, and so the
lab can check every certificate a run issued. Each finding names the section it comes from.
Path validation (5.1) is not done here: that is `openssl verify`'s and the services' job.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from zt.errors import SvidError
from zt.spiffe import SpiffeId, parse_spiffe_id


@dataclass(frozen=True)
class Finding:
    section: str
    rule: str

    def __str__(self) -> str:
        return f"X509-SVID {self.section}: {self.rule}"


def _ext(cert: x509.Certificate, cls: type[x509.ExtensionType]) -> x509.Extension[x509.ExtensionType] | None:
    try:
        return cert.extensions.get_extension_for_class(cls)
    except x509.ExtensionNotFound:
        return None


def uri_sans(cert: x509.Certificate) -> list[str]:
    ext = _ext(cert, x509.SubjectAlternativeName)
    if ext is None:
        return []
    assert isinstance(ext.value, x509.SubjectAlternativeName)
    return ext.value.get_values_for_type(x509.UniformResourceIdentifier)


def spiffe_id_of(cert: x509.Certificate) -> SpiffeId:
    """The certificate's SPIFFE ID; raise SvidError unless there is exactly one valid URI SAN."""
    uris = uri_sans(cert)
    if len(uris) != 1:
        raise SvidError(f"an SVID has exactly one URI SAN, this one has {len(uris)} (X509-SVID 2)")
    return parse_spiffe_id(uris[0])


def _common(cert: x509.Certificate) -> tuple[list[Finding], SpiffeId | None]:
    findings: list[Finding] = []
    sid: SpiffeId | None = None
    uris = uri_sans(cert)
    if len(uris) > 1:
        findings.append(Finding("2", f"exactly one URI SAN allowed, found {len(uris)}"))
    elif len(uris) == 1:
        try:
            sid = parse_spiffe_id(uris[0])
        except SvidError as e:
            findings.append(Finding("2", f"URI SAN is not a valid SPIFFE ID: {e}"))
    san = _ext(cert, x509.SubjectAlternativeName)
    if san is not None and len(cert.subject) == 0 and not san.critical:
        findings.append(Finding("3.1", "empty Subject requires a critical SAN extension (RFC 5280 4.1.2.6)"))
    ku = _ext(cert, x509.KeyUsage)
    if ku is None:
        findings.append(Finding("4.3", "key usage extension must be present"))
    elif not ku.critical:
        findings.append(Finding("4.3", "key usage extension must be critical"))
    return findings, sid


def check_leaf(cert: x509.Certificate) -> list[Finding]:
    """Findings for a workload (leaf) SVID; an empty list means conformant."""
    findings, sid = _common(cert)
    if not uri_sans(cert):
        findings.append(Finding("2", "a leaf SVID must carry its SPIFFE ID as a URI SAN"))
    if sid is not None and sid.is_root:
        findings.append(Finding("3.1", "a leaf SPIFFE ID must have a non-root path"))
    bc = _ext(cert, x509.BasicConstraints)
    if bc is not None:
        assert isinstance(bc.value, x509.BasicConstraints)
        if bc.value.ca:
            findings.append(Finding("4.1", "a leaf must have cA=false"))
    ku = _ext(cert, x509.KeyUsage)
    if ku is not None:
        assert isinstance(ku.value, x509.KeyUsage)
        if not ku.value.digital_signature:
            findings.append(Finding("4.3", "a leaf must have digitalSignature"))
        if ku.value.key_cert_sign:
            findings.append(Finding("4.3", "a leaf must not have keyCertSign"))
        if ku.value.crl_sign:
            findings.append(Finding("4.3", "a leaf must not have cRLSign"))
    eku = _ext(cert, x509.ExtendedKeyUsage)
    if eku is None:
        findings.append(Finding("4.4", "a leaf should carry an EKU extension"))
    else:
        assert isinstance(eku.value, x509.ExtendedKeyUsage)
        usages = set(eku.value)
        for need, name in (
            (ExtendedKeyUsageOID.SERVER_AUTH, "serverAuth"),
            (ExtendedKeyUsageOID.CLIENT_AUTH, "clientAuth"),
        ):
            if need not in usages:
                findings.append(Finding("4.4", f"a leaf EKU must include {name}"))
    return findings


def check_ca(cert: x509.Certificate) -> list[Finding]:
    """Findings for a signing (CA) certificate."""
    findings, sid = _common(cert)
    if sid is not None and not sid.is_root:
        findings.append(Finding("3.2", "a signing certificate's SPIFFE ID must have no path"))
    bc = _ext(cert, x509.BasicConstraints)
    if bc is None:
        findings.append(Finding("3.2", "a signing certificate must have basic constraints with cA=true"))
    else:
        assert isinstance(bc.value, x509.BasicConstraints)
        if not bc.value.ca:
            findings.append(Finding("3.2", "a signing certificate must have cA=true"))
    ku = _ext(cert, x509.KeyUsage)
    if ku is not None:
        assert isinstance(ku.value, x509.KeyUsage)
        if not ku.value.key_cert_sign:
            findings.append(Finding("4.3", "a signing certificate must have keyCertSign"))
    return findings
