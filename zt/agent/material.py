"""An identity as the agent holds it: private key, leaf, chain, bundle; and the CSR it sends.

The private key is generated here and never leaves the machine: only the CSR (public key,
self-signed) goes to the RA.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from zt.errors import ConfigError
from zt.pki.keys import PrivateKey, signature_hash


@dataclass(frozen=True)
class Material:
    key: PrivateKey
    leaf: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    bundle: tuple[x509.Certificate, ...]
    spiffe_id: str

    @property
    def serial(self) -> str:
        return format(self.leaf.serial_number, "x")

    @property
    def not_before(self) -> dt.datetime:
        return self.leaf.not_valid_before_utc

    @property
    def not_after(self) -> dt.datetime:
        return self.leaf.not_valid_after_utc

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        return (self.leaf, *self.intermediates)


def build_csr(key: PrivateKey, spiffe_id: str) -> x509.CertificateSigningRequest:
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), critical=True)
        .sign(key, signature_hash(key))  # type: ignore[arg-type]
    )


def csr_pem(csr: x509.CertificateSigningRequest) -> str:
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def material_from_response(key: PrivateKey, chain_pem: str, bundle_pem: str, spiffe_id: str) -> Material:
    """Check what the RA sent before anything is written: it must be for our key and our ID."""
    try:
        chain = x509.load_pem_x509_certificates(chain_pem.encode())
        bundle = x509.load_pem_x509_certificates(bundle_pem.encode())
    except ValueError as e:
        raise ConfigError(f"RA answered with unreadable certificates: {e}") from e
    leaf = chain[0]
    if leaf.public_key() != key.public_key():
        raise ConfigError("RA answered with a certificate for another key")
    uris = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier)
    if uris != [spiffe_id]:
        raise ConfigError(f"RA answered with a certificate for {uris}, expected {spiffe_id}")
    return Material(key, leaf, tuple(chain[1:]), tuple(bundle), spiffe_id)
