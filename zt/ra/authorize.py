"""Who may get what: every authorisation decision of the RA, in one place.

Each `authorize_*` function either raises (a RequestRejected with a reason the caller can act
on) or returns what the caller may be given: a `Grant` names the identity, the longest
lifetime, and what the request renews. The CA never decides; it signs what a Grant allows
(smallstep's provisioners / authority split, SPIRE's "the CA only signs"). Rate limits and
brute-force protection belong here too, beside the credentials they protect.

Decisions that depend on the store (is the token unspent, is the certificate unrevoked, is the
identity revoked) are made twice by the caller: once before signing (to fail fast), and again
inside the write transaction that records the result, so that a concurrent revocation or a
concurrent use of the same token always wins (see zt.ra.service).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from zt.ca.authority import Authority
from zt.clock import rfc3339
from zt.errors import BadRequest, Forbidden, NotFound, Unauthorized
from zt.pki.encoding import pem, serial_hex
from zt.pki.renewal_proof import PresentedChain
from zt.ra import tokens
from zt.ra.csr import requested_uris
from zt.ra.store_api import CertRecord, Conn, Identity, StateStore, TokenRead

MIN_LEAF_TTL = dt.timedelta(seconds=30)
# The store key where a running RA records its --leaf-ttl (zt.ra.server_cert).
MAX_LEAF_TTL_META = "ra_leaf_ttl_seconds"

# Names a workload may not register: the RA's own records use them (its TLS certificate is
# recorded under "zt-ra"), and a service of that name must never reach them.
RA_IDENTITY = "zt-ra"
RESERVED_SERVICE_NAMES = frozenset({RA_IDENTITY})


@dataclass(frozen=True)
class Grant:
    """What a caller may be given: one certificate for `identity`, living at most `lifetime`."""

    identity: Identity
    lifetime: dt.timedelta
    via: str  # "token", "renew" or "admin"
    renews: str | None = None  # the serial being renewed
    earlier: CertRecord | None = None  # a retried token request: the certificate it already bought


@dataclass(frozen=True)
class AdminGrant:
    actor: str


def max_leaf_lifetime(store: StateStore, default: dt.timedelta) -> dt.timedelta:
    """The RA's maximum leaf lifetime as its last start recorded it, else `default`."""
    raw = store.meta(MAX_LEAF_TTL_META)
    return dt.timedelta(seconds=float(raw)) if raw else default


def authorize_lifetime(ttl_seconds: int | None, maximum: dt.timedelta) -> dt.timedelta:
    """The lifetime to sign: the asked one if within [MIN_LEAF_TTL, maximum], else refuse."""
    if ttl_seconds is None:
        return maximum
    asked = dt.timedelta(seconds=ttl_seconds)
    if asked < MIN_LEAF_TTL or asked > maximum:
        raise BadRequest(
            f"ttl_seconds must be between {int(MIN_LEAF_TTL.total_seconds())} and {int(maximum.total_seconds())}",
            code="bad_ttl",
        )
    return asked


def authorize_admin(store: StateStore, token: str | None, actor: str = "admin") -> AdminGrant:
    expected = store.meta("admin_token_sha256")
    if token is None:
        raise Unauthorized("missing admin credential (Authorization: Bearer <admin token>)", code="missing_credential")
    if not expected or not tokens.same_hash(tokens.token_hash(token), expected):
        raise Unauthorized("admin credential is not valid", code="invalid_credential")
    return AdminGrant(actor)


def authorize_registration(service: str, existing: Identity | None, *, reenable: bool) -> None:
    """A reserved name is never registered; a revoked identity only when the operator re-enables
    it explicitly (`ztca register --reenable`), so a revocation cannot be undone by accident."""
    if service in RESERVED_SERVICE_NAMES:
        raise BadRequest(f"service name {service!r} is reserved for the RA itself", code="reserved_service_name")
    if existing is not None and existing.revoked and not reenable:
        raise Forbidden(
            f"service {service!r} was revoked at {_when(existing.revoked_at)}; re-enable it explicitly "
            f"with 'ztca register --reenable {service}'",
            code="revoked_identity",
        )


def authorize_csr_identity(csr: x509.CertificateSigningRequest, spiffe_id: str) -> None:
    """Accept only a CSR whose one and only SAN is the URI `spiffe_id`."""
    names = requested_uris(csr)
    if not names:
        raise BadRequest(f"csr has no subjectAltName; it must name {spiffe_id} as its only URI SAN", code="missing_san")
    asked = [
        n.value if isinstance(n, x509.UniformResourceIdentifier) else f"{type(n).__name__}:{n.value}" for n in names
    ]
    if len(names) != 1 or not isinstance(names[0], x509.UniformResourceIdentifier) or names[0].value != spiffe_id:
        raise Forbidden(
            f"csr asks for {', '.join(map(str, asked))}; this credential allows only {spiffe_id}",
            code="identity_mismatch",
        )


def _when(ts: float | None) -> str:
    return rfc3339(dt.datetime.fromtimestamp(ts or 0, dt.UTC))


def _require_active(ident: Identity) -> None:
    if ident.revoked:
        raise Unauthorized(
            f"service {ident.name!r} ({ident.spiffe_id}) was revoked at {_when(ident.revoked_at)}; "
            "an operator must re-enable it and issue a new bootstrap token",
            code="revoked_identity",
        )


def authorize_token(
    store: StateStore,
    conn: Conn,
    read: TokenRead,
    csr: x509.CertificateSigningRequest,
    spki: str,
    now: dt.datetime,
    lifetime: dt.timedelta,
) -> Grant:
    """A bootstrap token buys one certificate for its identity, once, before it expires.

    `read` is the token and its identity as `conn` holds them (`StateStore.token_read`: the
    caller reads them with the lockout's row in one statement). A retry with the same token and
    the same CSR key (the first answer was lost) is granted the certificate it already bought
    (`Grant.earlier`): the certificate is public and the key never left the requester, so this
    gives nothing away.
    """
    row, ident = read.token, read.identity
    if row is None:
        raise Unauthorized("bootstrap token is not known", code="unknown_token")
    if ident is None:
        raise Unauthorized("bootstrap token is not known", code="unknown_token")
    _require_active(ident)
    authorize_csr_identity(csr, ident.spiffe_id)
    if row.used_at is not None:
        if row.used_spki == spki and row.used_serial:
            earlier = store.certificate(row.used_serial, conn)
            if earlier is not None and not earlier.revoked:
                return Grant(ident, lifetime, "token", earlier=earlier)
        raise Unauthorized("bootstrap token was already used", code="used_token")
    if now.timestamp() >= row.expires_at:
        raise Unauthorized("bootstrap token has expired; register again for a new one", code="expired_token")
    return Grant(ident, lifetime, "token")


def authorize_proof_chain(authority: Authority, chain: PresentedChain, now: dt.datetime) -> x509.Certificate:
    """The x5c leaf, if this CA issued it: signed by our intermediate, or (after
    `ztca rotate-intermediate`) by a presented intermediate that one of our roots signed and
    that is valid now.

    Why not cryptography's X.509 path validation (PolicyBuilder / ClientVerifier): our
    intermediate carries a URI name constraint (the trust domain, RFC 5280 4.2.1.10), and
    cryptography's verifier (50.x) refuses every such chain with "unsupported name
    constraint" (tests/unit/test_ra_authorize.py pins this, so an upgrade that supports it is
    noticed). The rest of path validation is done against the record the RA keeps: the leaf
    must be byte-for-byte a certificate this RA issued, unrevoked and unexpired
    (`authorize_renewal`).
    """
    leaf = chain.leaf
    if _issued_by(leaf, authority.certificate):
        return leaf
    for inter in chain.intermediates:
        if (
            inter.not_valid_before_utc <= now < inter.not_valid_after_utc
            and _is_ca(inter)
            and any(_issued_by(inter, root) for root in authority.roots)
            and _issued_by(leaf, inter)
        ):
            return leaf
    raise Unauthorized("certificate in the proof was not issued by this CA", code="unknown_certificate")


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (x509.ExtensionNotFound, ValueError):
        return False


def authorize_renewal(
    store: StateStore,
    conn: Conn,
    leaf: x509.Certificate,
    claims: dict[str, Any],
    csr: x509.CertificateSigningRequest,
    now: dt.datetime,
    lifetime: dt.timedelta,
) -> Grant:
    """A renewal proof made with a current certificate's key buys its successor.

    The certificate must be on record (byte-for-byte), unrevoked and unexpired; its identity
    not revoked; and nothing it was renewed from revoked for key compromise (whoever held that
    key could have made every renewal since).
    """
    serial = serial_hex(leaf)
    rec = store.certificate(serial, conn)
    if rec is None or rec.pem.encode() != pem(leaf):
        raise Unauthorized(f"certificate {serial} is not known to this RA", code="unknown_certificate")
    ident = store.identity(rec.identity, conn)
    if ident is None or ident.spiffe_id != rec.spiffe_id:
        raise Unauthorized(f"certificate {serial} does not belong to a registered service", code="unknown_certificate")
    _require_active(ident)
    if rec.revoked:
        raise Unauthorized(
            f"certificate {serial} is revoked; bootstrap again with a new token", code="revoked_certificate"
        )
    compromised = StateStore.compromised_ancestor(conn, serial)
    if compromised is not None:
        raise Unauthorized(
            f"certificate {serial} was renewed from {compromised}, revoked for key compromise; "
            "bootstrap again with a new token",
            code="revoked_certificate",
        )
    if now.timestamp() >= rec.not_after:
        raise Unauthorized(
            f"certificate {serial} has expired; bootstrap again with a new token", code="expired_certificate"
        )
    if claims.get("sub") != rec.spiffe_id:
        raise Unauthorized("renewal proof subject does not match the certificate", code="bad_proof")
    authorize_csr_identity(csr, rec.spiffe_id)
    return Grant(ident, lifetime, "renew", renews=serial)


def authorize_admin_issue(
    store: StateStore, conn: Conn, service: str, csr: x509.CertificateSigningRequest, lifetime: dt.timedelta
) -> Grant:
    """The admin path (`ztca issue`): a registered, unrevoked service only."""
    ident = store.identity(service, conn)
    if ident is None:
        raise NotFound(
            f"service {service!r} is not registered; run 'ztca register {service}' first", code="unknown_service"
        )
    if ident.revoked:
        raise Forbidden(
            f"service {service!r} was revoked at {_when(ident.revoked_at)}; re-enable it with "
            f"'ztca register --reenable {service}' first",
            code="revoked_identity",
        )
    authorize_csr_identity(csr, ident.spiffe_id)
    return Grant(ident, lifetime, "admin")
