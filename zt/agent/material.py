"""An identity as the agent holds it: private key, leaf, chain, bundle; and the CSR it sends.

The private key is generated here and never leaves the machine: only the CSR (public key,
self-signed) goes to the RA.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from zt.agent.trust import verify_svid
from zt.errors import RemoteError, SvidError
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


def material_from_response(
    key: PrivateKey, chain_pem: str, bundle_pem: str, spiffe_id: str, *, roots: Sequence[x509.Certificate] | None = None
) -> Material:
    """Check what the RA sent before anything is written, and build the material to write.

    The chain must verify against `roots` (the pinned bundle; `zt.agent.trust.verify_svid`), be
    for our key and name our SPIFFE ID. The bundle written is `roots`, never the one the RA
    sent: trust is only changed by the operator (a new pinned bundle). A caller that holds the
    CA itself (`ztca issue`) may pass no `roots`, and then the CA's own bundle is the trust.
    Anything wrong is the RA's fault, not the operator's: a permanent RemoteError (retrying the
    same request cannot help), never a ConfigError.
    """
    try:
        chain = x509.load_pem_x509_certificates(chain_pem.encode())
        trusted = tuple(roots) if roots is not None else tuple(x509.load_pem_x509_certificates(bundle_pem.encode()))
    except ValueError as e:
        raise RemoteError(f"RA answered with unreadable certificates: {e}", permanent=True) from e
    try:
        verify_svid(key, chain, trusted, spiffe_id)
    except SvidError as e:
        raise RemoteError(f"RA answered with a certificate we cannot use: {e}", permanent=True) from e
    return Material(key, chain[0], tuple(chain[1:]), trusted, spiffe_id)


def offered_bundle(bundle_pem: str) -> tuple[x509.Certificate, ...]:
    """The bundle an RA answer carries, for comparing with the pinned one (never written)."""
    try:
        return tuple(x509.load_pem_x509_certificates(bundle_pem.encode()))
    except ValueError:
        return ()
