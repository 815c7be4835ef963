"""Key generation and the key policy: which public keys zt will certify.

Acceptable (per the RA's contract): ECDSA P-256 and P-384, Ed25519, RSA 2048 to 8192 bits
with exponent 65537. The upper RSA bound keeps a hostile CSR from costing seconds of CPU.
"""

from __future__ import annotations

import enum

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, PublicKeyTypes

PrivateKey = CertificateIssuerPrivateKeyTypes


class KeyType(enum.StrEnum):
    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    ED25519 = "ed25519"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"


def generate_key(kind: KeyType = KeyType.EC_P256) -> PrivateKey:
    if kind is KeyType.EC_P256:
        return ec.generate_private_key(ec.SECP256R1())
    if kind is KeyType.EC_P384:
        return ec.generate_private_key(ec.SECP384R1())
    if kind is KeyType.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    bits = 2048 if kind is KeyType.RSA_2048 else 3072
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def key_problem(public_key: PublicKeyTypes) -> str | None:
    """Why this key is not acceptable, or None when it is."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in ("secp256r1", "secp384r1"):
            return f"ECDSA curve {public_key.curve.name} is not accepted (use P-256 or P-384)"
        return None
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return None
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < 2048:
            return f"RSA key of {public_key.key_size} bits is too small (minimum 2048)"
        if public_key.key_size > 8192:
            return f"RSA key of {public_key.key_size} bits is too large (maximum 8192)"
        if public_key.public_numbers().e != 65537:
            return "RSA public exponent must be 65537"
        return None
    return f"key type {type(public_key).__name__} is not accepted (use ECDSA P-256/P-384, Ed25519 or RSA >= 2048)"


def signature_hash(private_key: PrivateKey) -> hashes.HashAlgorithm | None:
    """The hash to sign with: None for Ed25519 (it hashes internally), SHA-384 for P-384."""
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(private_key, ec.EllipticCurvePrivateKey) and private_key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()
