"""Benchmark and example: our CA signing through PKCS#11 (SoftHSM2 for development).

The seam docs/hsm-kms.md describes, made concrete: `Pkcs11EcKey` implements `cryptography`'s
EllipticCurvePrivateKey interface over a key in a PKCS#11 token (`C_Sign` with CKM_ECDSA on the
SHA-256 digest; the raw r||s the token returns converted to the DER `cryptography` expects), and
an `Authority` holding it signs leaves and CRLs unchanged. Prints the cost per signature and
per leaf next to the same work with the local key.

    apt-get install softhsm2 opensc; pip install python-pkcs11     # not zt dependencies
    export SOFTHSM2_CONF=$PWD/softhsm2.conf   # directories.tokendir = <a 0700 directory>
    softhsm2-util --init-token --free --label zt-ca --pin "$PIN" --so-pin "$SO_PIN"
    pkcs11-tool --module /usr/lib/softhsm/libsofthsm2.so --token-label zt-ca --login --pin "$PIN" \
      --keypairgen --key-type EC:prime256v1 --label intermediate --id 01 --usage-sign
    ZT_PKCS11_PIN="$PIN" python -m bench.pkcs11_sign --token-label zt-ca --key-label intermediate

The certificate here is a throwaway self-signed one for the token's key (enough to time and
verify signing); a real deployment has the offline root sign a certificate for it (hsm-kms.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID

from zt.ca.authority import Authority
from zt.ca.crl import sign_crl
from zt.clock import utcnow
from zt.pki.keys import generate_key
from zt.spiffe import workload_id

SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"


class Pkcs11EcKey(ec.EllipticCurvePrivateKey):
    """A P-256 key in a PKCS#11 token: signs with C_Sign, never exports the private half."""

    def __init__(self, session: Any, private: Any, public: ec.EllipticCurvePublicKey) -> None:
        self._session, self._private, self._public = session, private, public

    def sign(self, data: Any, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        import pkcs11

        alg = signature_algorithm
        if not isinstance(alg, ec.ECDSA) or not isinstance(alg.algorithm, hashes.SHA256):
            raise ValueError("this token key signs ECDSA with SHA-256 only")
        digest = hashlib.sha256(bytes(data)).digest()
        raw = self._private.sign(digest, mechanism=pkcs11.Mechanism.ECDSA)  # r || s, 32 bytes each
        half = len(raw) // 2
        return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise NotImplementedError("signing key only")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise NotImplementedError("the private key stays in the token")

    def private_bytes(self, *args: Any, **kwargs: Any) -> bytes:
        raise NotImplementedError("the private key stays in the token")

    def __copy__(self) -> Pkcs11EcKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Pkcs11EcKey:
        return self


def open_key(module: str, token_label: str, key_label: str, pin: str) -> tuple[Any, Pkcs11EcKey]:
    import pkcs11
    from pkcs11.util.ec import encode_ec_public_key

    lib = pkcs11.lib(module)
    token = lib.get_token(token_label=token_label)
    session = token.open(user_pin=pin)
    private = session.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, label=key_label)
    public: Any = session.get_key(object_class=pkcs11.ObjectClass.PUBLIC_KEY, label=key_label)
    der = encode_ec_public_key(public)  # SubjectPublicKeyInfo DER
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    pub = load_der_public_key(der)
    if not isinstance(pub, ec.EllipticCurvePublicKey):
        raise SystemExit(f"{key_label} is not an EC key")
    return session, Pkcs11EcKey(session, private, pub)


def throwaway_ca(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "zt pkcs11 bench")])
    now = utcnow()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )


def per_op_ms(fn: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(rounds):
            fn()
        best = min(best, (time.perf_counter() - t0) / rounds)
    return best * 1000


def timings(key: ec.EllipticCurvePrivateKey, auth: Authority, rounds: int) -> tuple[float, float, float]:
    """ms per raw signature, per leaf, per empty CRL."""
    sid = workload_id("zt.lab", "bench")
    pub = generate_key().public_key()
    now = utcnow()

    def sign() -> object:
        return key.sign(b"\x30" * 400, ec.ECDSA(hashes.SHA256()))

    def leaf() -> object:
        return auth.sign_leaf(pub, sid, dt.timedelta(hours=1), now, None)

    def crl() -> object:
        return sign_crl(auth, [], 1, now, now + dt.timedelta(hours=1))

    return per_op_ms(sign, rounds), per_op_ms(leaf, rounds), per_op_ms(crl, rounds)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.pkcs11_sign", description=__doc__.splitlines()[0])
    p.add_argument("--module", default=SOFTHSM, help=f"PKCS#11 module (default: {SOFTHSM})")
    p.add_argument("--token-label", default="zt-ca")
    p.add_argument("--key-label", default="intermediate")
    p.add_argument("--rounds", type=int, default=500)
    args = p.parse_args(argv)
    pin = os.environ.get("ZT_PKCS11_PIN")
    if not pin:
        print("bench.pkcs11_sign: set ZT_PKCS11_PIN to the token's user PIN", file=sys.stderr)
        return 2
    try:
        import pkcs11  # noqa: F401
    except ImportError:
        print("bench.pkcs11_sign: needs python-pkcs11 (pip install python-pkcs11)", file=sys.stderr)
        return 2
    session, hsm_key = open_key(args.module, args.token_label, args.key_label, pin)
    try:
        local_key = generate_key()
        assert isinstance(local_key, ec.EllipticCurvePrivateKey)
        sid = workload_id("zt.lab", "bench")
        pub = generate_key().public_key()
        now = utcnow()
        rows = []
        for label, key in (("local", local_key), ("pkcs11", hsm_key)):
            cert = throwaway_ca(key)
            auth = Authority("zt.lab", cert, key, (cert,))
            leaf = auth.sign_leaf(pub, sid, dt.timedelta(hours=1), now, None)
            leaf.verify_directly_issued_by(cert)  # the token's signature verifies
            crl = sign_crl(auth, [], 1, now, now + dt.timedelta(hours=1))
            assert crl.is_signature_valid(key.public_key())
            rows.append((label, *timings(key, auth, args.rounds)))
    finally:
        session.close()
    print(f"{'key':<8} {'sign ms':>9} {'sign_leaf ms':>13} {'sign_crl ms':>12}")
    for label, s, leaf_ms, crl_ms in rows:
        print(f"{label:<8} {s:9.3f} {leaf_ms:13.3f} {crl_ms:12.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
