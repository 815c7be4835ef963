"""Checking a certificate signing request before anything is signed.

The RA copies nothing from a CSR but its public key: the profile (extensions, lifetime) is
ours. What the CSR must show: a valid self-signature (proof that the requester holds the
private key, RFC 2986), an acceptable key, and exactly one SAN, a URI equal to the identity
the credential allows (checked in zt.ra.authorize).
"""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from zt.errors import BadRequest
from zt.pki.keys import key_problem

MAX_CSR_PEM = 16 * 1024


def parse_csr(text: str) -> x509.CertificateSigningRequest:
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("csr is empty", code="malformed_csr")
    if len(text) > MAX_CSR_PEM:
        raise BadRequest(f"csr is larger than {MAX_CSR_PEM} bytes", code="malformed_csr")
    try:
        csr = x509.load_pem_x509_csr(text.encode())
    except (ValueError, UnicodeEncodeError) as e:
        raise BadRequest(f"csr is not a PEM certificate request: {e}", code="malformed_csr") from e
    try:
        valid = csr.is_signature_valid
        public_key = csr.public_key()
    except (ValueError, TypeError, x509.UnsupportedGeneralNameType) as e:
        raise BadRequest(f"csr cannot be read: {e}", code="malformed_csr") from e
    if not valid:
        raise BadRequest("csr signature does not verify (no proof of possession)", code="malformed_csr")
    problem = key_problem(public_key)
    if problem:
        raise BadRequest(problem, code="unacceptable_key")
    return csr


def requested_uris(csr: x509.CertificateSigningRequest) -> list[x509.GeneralName]:
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    except (ValueError, x509.DuplicateExtension) as e:
        raise BadRequest(f"csr extensions cannot be read: {e}", code="malformed_csr") from e
    return list(ext.value)


def spki_sha256(csr_or_cert: x509.CertificateSigningRequest | x509.Certificate) -> str:
    der = csr_or_cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()
