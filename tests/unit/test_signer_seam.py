"""The signer seam docs/hsm-kms.md describes: `Authority.key` may be any object implementing
`cryptography`'s EllipticCurvePrivateKey interface, and leaves and CRLs are then signed by
calling its `sign()` once each, without the private key ever being read.

`ExternalKey` stands in for a PKCS#11 or KMS-backed key: it has the public key, signs through a
callback (here a local key; in production a `C_Sign` or a KMS `Sign` call) and refuses to export
the private key, as a non-extractable HSM key does. If a future `cryptography` stopped calling
`sign()` on such objects, or our code started reading the private key, this test fails.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from tests.conftest import make_ca
from zt.ca.authority import Authority
from zt.ca.crl import RevokedEntry, sign_crl
from zt.ca.layout import CaPaths
from zt.clock import utcnow
from zt.pki.keys import generate_key
from zt.spiffe import workload_id


class NotExtractable(Exception):
    pass


class ExternalKey(ec.EllipticCurvePrivateKey):
    """An EC key whose private half lives elsewhere (an HSM slot, a KMS key version)."""

    def __init__(self, inner: ec.EllipticCurvePrivateKey) -> None:
        self._inner = inner  # the "device"; only sign() reaches it
        self.signed: list[int] = []  # lengths of what was signed, one entry per device call

    def sign(self, data: Any, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        assert isinstance(signature_algorithm, ec.ECDSA)
        assert not isinstance(signature_algorithm.algorithm, Prehashed)
        self.signed.append(len(data))
        return self._inner.sign(data, signature_algorithm)

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._inner.public_key()

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._inner.curve

    @property
    def key_size(self) -> int:
        return self._inner.key_size

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise NotExtractable("an HSM key used for signing does not do ECDH here")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise NotExtractable("the private key never leaves the device")

    def private_bytes(self, *args: Any, **kwargs: Any) -> bytes:
        raise NotExtractable("the private key never leaves the device")

    def __copy__(self) -> ExternalKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> ExternalKey:
        return self


def external_authority(tmp_path: Path) -> tuple[Authority, ExternalKey]:
    local = Authority.load(CaPaths(make_ca(tmp_path).dir), "zt.lab")
    assert isinstance(local.key, ec.EllipticCurvePrivateKey)
    key = ExternalKey(local.key)
    return Authority(local.trust_domain, local.certificate, key, local.roots), key


def test_a_leaf_is_signed_by_one_call_to_the_external_key(tmp_path: Path) -> None:
    auth, key = external_authority(tmp_path)
    now = utcnow()
    leaf = auth.sign_leaf(generate_key().public_key(), workload_id("zt.lab", "a"), dt.timedelta(hours=1), now, None)
    assert len(key.signed) == 1 and key.signed[0] == len(leaf.tbs_certificate_bytes)
    leaf.verify_directly_issued_by(auth.certificate)
    with pytest.raises(NotExtractable):
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def test_a_crl_is_signed_by_one_call_to_the_external_key(tmp_path: Path) -> None:
    auth, key = external_authority(tmp_path)
    now = utcnow()
    entries = [RevokedEntry(1000 + i, now - dt.timedelta(minutes=1), "key-compromise") for i in range(50)]
    crl = sign_crl(auth, entries, 7, now, now + dt.timedelta(hours=1))
    assert len(key.signed) == 1 and key.signed[0] == len(crl.tbs_certlist_bytes)
    pub = auth.certificate.public_key()
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    assert crl.is_signature_valid(pub)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki == x509.AuthorityKeyIdentifier.from_issuer_public_key(pub)


def test_a_device_that_fails_fails_the_signature_not_silently(tmp_path: Path) -> None:
    """A remote signer that errors (HSM session lost, KMS throttled) raises out of sign_leaf."""
    auth, key = external_authority(tmp_path)

    def broken(data: Any, alg: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        raise ConnectionError("KMS unavailable")

    key.sign = broken  # type: ignore[method-assign,assignment]
    with pytest.raises(ConnectionError, match="KMS unavailable"):
        auth.sign_leaf(generate_key().public_key(), workload_id("zt.lab", "a"), dt.timedelta(hours=1), utcnow(), None)


def test_the_signature_is_ecdsa_with_sha256_as_for_a_local_p256_key(tmp_path: Path) -> None:
    auth, _ = external_authority(tmp_path)
    leaf = auth.sign_leaf(
        generate_key().public_key(), workload_id("zt.lab", "a"), dt.timedelta(hours=1), utcnow(), None
    )
    assert isinstance(leaf.signature_hash_algorithm, hashes.SHA256)
