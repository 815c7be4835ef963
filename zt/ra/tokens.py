"""Bootstrap and admin tokens: random, prefixed, stored only as SHA-256 hashes.

A token is 32 random bytes (256 bits), URL-safe base64, with a prefix that says what it is
(`ztb_` bootstrap, `zta_` admin) so secret scanners and humans recognise a leaked one. The
store keeps only the hash; a plain hash (not a slow KDF) is right for 256-bit random secrets,
which cannot be guessed, and keeps every lookup a single indexed read.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

BOOTSTRAP_PREFIX = "ztb_"
ADMIN_PREFIX = "zta_"
MAX_TOKEN_LENGTH = 256


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or len(value) > MAX_TOKEN_LENGTH:
        return None
    return value
