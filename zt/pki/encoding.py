"""PEM encoding and decoding of certificates and keys, and the serial number's text form.

One definition used by the CA (writing its files), the RA (answers, its TLS certificate) and
the agent (the certificate directory), so the bytes on disk and on the wire agree.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from zt.errors import CaError
from zt.pki.keys import PrivateKey


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8: the caller writes it 0600 from creation (zt.fsutil)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_certs(data: bytes, what: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise CaError(f"{what}: not PEM certificates ({e})") from e
    return certs


def load_private_key(data: bytes, what: str) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise CaError(f"{what}: cannot load private key ({e})") from e
    return key  # type: ignore[return-value]


def serial_hex(cert: x509.Certificate) -> str:
    """Lower-case hex without leading zeros: the form the store, the API and the logs share."""
    return format(cert.serial_number, "x")
