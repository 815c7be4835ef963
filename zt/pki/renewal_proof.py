"""Renewal proof: an x5c-signed JWT that shows possession of the current certificate's key.

Why not the bootstrap token again: tokens are single-use and short-lived; a workload renews
for as long as it runs. Why not only mTLS: proxies and ASGI servers often hide the peer
certificate. So, like step-ca's x5c provisioner, the agent signs a short-lived JWT with its
current private key and puts its chain in the JWS `x5c` header (RFC 7515 4.1.6):

    header  {"alg": ES256|ES384|EdDSA|RS256, "typ": "zt-renew+jwt", "x5c": [leaf, intermediate]}
    claims  {"aud": "zt-ra/v1/renew", "sub": <SPIFFE ID>, "iat", "exp" (<= 5 min), "jti",
             "csr_sha256": base64url(SHA-256(CSR DER))}

The `csr_sha256` claim binds the proof to one CSR; `jti` is remembered until `exp` so a
captured proof cannot be replayed.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from zt.errors import Unauthorized
from zt.pki.keys import PrivateKey

AUDIENCE = "zt-ra/v1/renew"
TYPE = "zt-renew+jwt"
LIFETIME = dt.timedelta(minutes=5)
MAX_PROOF_LENGTH = 16 * 1024
LEEWAY_SECONDS = 30


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def csr_digest(csr_der: bytes) -> str:
    return _b64url(hashlib.sha256(csr_der).digest())


def algorithm_for(key: PrivateKey | PublicKeyTypes) -> str:
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return "ES384" if key.curve.key_size >= 384 else "ES256"
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "EdDSA"
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "RS256"
    raise Unauthorized(f"key type {type(key).__name__} cannot sign a renewal proof", code="bad_proof")


def make_renewal_proof(
    key: PrivateKey,
    chain: Sequence[x509.Certificate],
    spiffe_id: str,
    csr_der: bytes,
    now: dt.datetime,
) -> str:
    x5c = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in chain]
    claims = {
        "aud": AUDIENCE,
        "sub": spiffe_id,
        "iat": int(now.timestamp()),
        "exp": int((now + LIFETIME).timestamp()),
        "jti": secrets.token_urlsafe(18),
        "csr_sha256": csr_digest(csr_der),
    }
    return jwt.encode(claims, key, algorithm=algorithm_for(key), headers={"typ": TYPE, "x5c": x5c})  # type: ignore[arg-type]


@dataclass(frozen=True)
class PresentedChain:
    leaf: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]


def presented_chain(proof: str) -> PresentedChain:
    """The chain in the proof's x5c header, not yet trusted for anything."""
    if not isinstance(proof, str) or not proof or len(proof) > MAX_PROOF_LENGTH:
        raise Unauthorized("renewal proof is missing or too large", code="bad_proof")
    try:
        header = jwt.get_unverified_header(proof)
        x5c = header.get("x5c")
        if header.get("typ") != TYPE or not isinstance(x5c, list) or not 1 <= len(x5c) <= 3:
            raise ValueError("header needs typ zt-renew+jwt and an x5c of 1 to 3 certificates")
        certs = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in x5c]
    except (jwt.PyJWTError, ValueError, TypeError) as e:
        raise Unauthorized(f"renewal proof is malformed: {e}", code="bad_proof") from e
    return PresentedChain(certs[0], tuple(certs[1:]))


def verify_renewal_proof(proof: str, leaf: x509.Certificate, csr_der: bytes, now: dt.datetime) -> dict[str, Any]:
    """Check the signature with the leaf's key and the claims; return the claims."""
    public_key = leaf.public_key()
    try:
        claims: dict[str, Any] = jwt.decode(
            proof,
            key=public_key,  # type: ignore[arg-type]
            algorithms=[algorithm_for(public_key)],
            audience=AUDIENCE,
            # Time claims are checked below against our Clock, not PyJWT's wall clock.
            options={
                "require": ["aud", "sub", "iat", "exp", "jti"],
                "verify_iat": False,
                "verify_exp": False,
                "verify_nbf": False,
            },
        )
    except jwt.PyJWTError as e:
        raise Unauthorized(f"renewal proof does not verify: {e}", code="bad_proof") from e
    iat = claims.get("iat")
    exp = claims.get("exp")
    if not isinstance(iat, int) or not isinstance(exp, int) or exp - iat > LIFETIME.total_seconds() + 1:
        raise Unauthorized("renewal proof lifetime must not exceed 5 minutes", code="bad_proof")
    if exp < now.timestamp() - LEEWAY_SECONDS:
        raise Unauthorized("renewal proof has expired; sign a fresh one", code="bad_proof")
    if iat > now.timestamp() + LEEWAY_SECONDS:
        raise Unauthorized("renewal proof is issued in the future", code="bad_proof")
    if claims.get("csr_sha256") != csr_digest(csr_der):
        raise Unauthorized("renewal proof is bound to a different CSR", code="bad_proof")
    if not isinstance(claims.get("jti"), str) or len(claims["jti"]) > 128:
        raise Unauthorized("renewal proof jti must be a short string", code="bad_proof")
    return claims
