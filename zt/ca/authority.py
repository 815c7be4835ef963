"""The issuing authority: the intermediate CA, loaded from a CA directory, signing leaves.

It signs what it is asked to within the leaf profile, and it caps every lifetime at its own
notAfter (a leaf must never outlive its issuer). Whether a caller may have a certificate is
decided before this is called (zt.ra.authorize).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes

from zt.ca.layout import CaPaths
from zt.ca.profiles import leaf_extensions, leaf_name
from zt.errors import CaError
from zt.pki.encoding import load_certs, load_private_key, pem
from zt.pki.keys import PrivateKey, signature_hash
from zt.spiffe import SpiffeId

# Backdating absorbs small clock differences between the RA and relying parties.
BACKDATE = dt.timedelta(seconds=30)


@dataclass(frozen=True)
class Authority:
    trust_domain: str
    certificate: x509.Certificate
    key: PrivateKey
    roots: tuple[x509.Certificate, ...]

    @classmethod
    def load(cls, paths: CaPaths, trust_domain: str) -> Authority:
        try:
            cert_pem = paths.intermediate_cert.read_bytes()
            key_pem = paths.intermediate_key.read_bytes()
            bundle_pem = paths.bundle.read_bytes()
        except OSError as e:
            raise CaError(f"CA directory {paths.dir} is incomplete: {e}") from e
        cert = load_certs(cert_pem, str(paths.intermediate_cert))[0]
        key = load_private_key(key_pem, str(paths.intermediate_key))
        if key.public_key() != cert.public_key():
            raise CaError(f"{paths.intermediate_key} does not match {paths.intermediate_cert}")
        return cls(trust_domain, cert, key, tuple(load_certs(bundle_pem, str(paths.bundle))))

    @property
    def not_after(self) -> dt.datetime:
        return self.certificate.not_valid_after_utc

    # What does not change between leaves, computed once per loaded authority (a frozen
    # dataclass: cached_property stores in the instance's __dict__).
    @functools.cached_property
    def _intermediate_pem(self) -> bytes:
        return pem(self.certificate)

    @functools.cached_property
    def _bundle_pem(self) -> bytes:
        return b"".join(pem(c) for c in self.roots)

    @functools.cached_property
    def _authority_key_id(self) -> x509.AuthorityKeyIdentifier:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(self._public_key)

    @functools.cached_property
    def _public_key(self) -> CertificateIssuerPublicKeyTypes:
        """The signing key's public half, derived once (for a key in an HSM, a round trip each time)."""
        return self.key.public_key()

    def chain_pem(self, leaf: x509.Certificate) -> bytes:
        """What a TLS peer presents: the leaf, then the intermediate (never the root)."""
        return self.chain_pem_of(pem(leaf))

    def chain_pem_of(self, leaf_pem: bytes) -> bytes:
        """The same from the leaf's PEM, when the caller has it (the RA's records hold it)."""
        return leaf_pem + self._intermediate_pem

    def bundle_pem(self) -> bytes:
        return self._bundle_pem

    def sign_leaf(
        self,
        public_key: CertificateIssuerPublicKeyTypes,
        spiffe_id: SpiffeId,
        lifetime: dt.timedelta,
        now: dt.datetime,
        crl_url: str | None,
        *,
        serial: int | None = None,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
    ) -> x509.Certificate:
        if now >= self.not_after:
            raise CaError(f"the intermediate CA expired at {self.not_after:%Y-%m-%dT%H:%M:%SZ}; it cannot sign")
        if spiffe_id.trust_domain != self.trust_domain:
            raise CaError(f"{spiffe_id} is outside trust domain {self.trust_domain}")
        # Backdate a little for clock skew, but never by a large share of a short lifetime.
        backdate = min(BACKDATE, lifetime / 10)
        not_before = max(now - backdate, self.certificate.not_valid_before_utc)
        not_after = min(now + lifetime, self.not_after)  # never past the issuer
        builder = (
            x509.CertificateBuilder()
            .subject_name(leaf_name(spiffe_id.path.rsplit("/", 1)[-1] or self.trust_domain))
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(serial if serial is not None else x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
        )
        builder = leaf_extensions(
            builder,
            public_key=public_key,
            issuer_public_key=self._public_key,
            spiffe_id=spiffe_id,
            crl_url=crl_url,
            dns_names=dns_names,
            ip_addresses=ip_addresses,
            authority_key_id=self._authority_key_id,
        )
        return builder.sign(self.key, signature_hash(self.key))  # type: ignore[arg-type]
