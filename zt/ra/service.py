"""The RA's decisions, independent of HTTP: register, issue, renew, revoke, status.

Each operation authorises first (token, renewal proof, admin credential), then asks the CA to
sign, then records, all in one store transaction, so a kill at any moment leaves either
nothing or everything (token spent + certificate recorded). The HTTP layer (zt.ra.app) only
maps requests and errors.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from zt.ca.authority import Authority
from zt.ca.layout import CaPaths
from zt.clock import Clock, rfc3339
from zt.errors import BadRequest, CaError, NotFound, StoreError, SvidError, Unauthorized
from zt.logjson import log_event
from zt.pki.encoding import pem, serial_hex
from zt.pki.renewal_proof import presented_chain, verify_renewal_proof
from zt.ra import tokens
from zt.ra.csr import authorize_csr_identity, parse_csr, spki_sha256
from zt.ra.revocation import PublishedCrl, revoke_and_publish
from zt.ra.store import CertRecord, Identity, Store
from zt.spiffe import parse_spiffe_id, validate_service_name, workload_id

log = logging.getLogger("zt.ra")

MIN_LEAF_TTL = dt.timedelta(seconds=30)
DEFAULT_LEAF_TTL = dt.timedelta(hours=1)
DEFAULT_TOKEN_TTL = dt.timedelta(hours=1)
MAX_TOKEN_TTL = dt.timedelta(days=30)


@dataclass(frozen=True)
class Issued:
    record: CertRecord
    chain_pem: str
    bundle_pem: str


@dataclass(frozen=True)
class Registered:
    identity: Identity
    token: str
    expires_at: dt.datetime


def hash_admin_token(token: str) -> str:
    return tokens.token_hash(token)


class RegistrationAuthority:
    def __init__(self, store: Store, authority: Authority, paths: CaPaths, clock: Clock, *,
                 leaf_ttl: dt.timedelta = DEFAULT_LEAF_TTL, crl_url: str | None = None) -> None:
        if leaf_ttl < MIN_LEAF_TTL:
            raise BadRequest(f"leaf lifetime must be at least {int(MIN_LEAF_TTL.total_seconds())}s")
        self.store = store
        self.authority = authority
        self.paths = paths
        self.clock = clock
        self.leaf_ttl = leaf_ttl
        self.crl_url = crl_url

    # -- credentials ---------------------------------------------------------------------------

    def authorize_admin(self, token: str | None) -> None:
        expected = self.store.meta("admin_token_sha256")
        if token is None:
            raise Unauthorized("missing admin credential (Authorization: Bearer <admin token>)",
                               code="missing_credential")
        if not expected or not tokens.same_hash(tokens.token_hash(token), expected):
            raise Unauthorized("admin credential is not valid", code="invalid_credential")

    def _lifetime(self, ttl_seconds: int | None) -> dt.timedelta:
        if ttl_seconds is None:
            return self.leaf_ttl
        asked = dt.timedelta(seconds=ttl_seconds)
        if asked < MIN_LEAF_TTL or asked > self.leaf_ttl:
            raise BadRequest(f"ttl_seconds must be between {int(MIN_LEAF_TTL.total_seconds())} and "
                             f"{int(self.leaf_ttl.total_seconds())}", code="bad_ttl")
        return asked

    # -- register ------------------------------------------------------------------------------

    def register(self, service: str, token_ttl: dt.timedelta = DEFAULT_TOKEN_TTL, actor: str = "admin") -> Registered:
        """Create (or keep) the service's identity and mint a one-time bootstrap token."""
        try:
            validate_service_name(service)
        except SvidError as e:
            raise BadRequest(str(e), code="bad_service_name") from e
        if not dt.timedelta(seconds=1) <= token_ttl <= MAX_TOKEN_TTL:
            raise BadRequest(f"token lifetime must be between 1s and {MAX_TOKEN_TTL.days} days", code="bad_ttl")
        now = self.clock.now()
        sid = str(workload_id(self.authority.trust_domain, service))
        token = tokens.new_token(tokens.BOOTSTRAP_PREFIX)
        expires = now + token_ttl
        with self.store.write() as c:
            ident = Store.ensure_identity(c, service, sid, now.timestamp())
            Store.add_token(c, tokens.token_hash(token), service, now.timestamp(), expires.timestamp())
            Store.audit(c, now.timestamp(), actor, "register", sid, "ok", f"token expires {rfc3339(expires)}")
        log_event(log, "registered", service=service, spiffe_id=sid, token_expires=rfc3339(expires))
        return Registered(ident, token, expires)

    # -- issue ---------------------------------------------------------------------------------

    def _sign(self, identity: Identity, csr: x509.CertificateSigningRequest, lifetime: dt.timedelta,
              now: dt.datetime, via: str) -> tuple[x509.Certificate, CertRecord]:
        try:
            cert = self.authority.sign_leaf(csr.public_key(), parse_spiffe_id(identity.spiffe_id),  # type: ignore[arg-type]
                                            lifetime, now, self.crl_url)
        except CaError as e:
            raise StoreError(str(e)) from e
        rec = CertRecord(
            serial=serial_hex(cert), identity=identity.name, spiffe_id=identity.spiffe_id,
            not_before=cert.not_valid_before_utc.timestamp(), not_after=cert.not_valid_after_utc.timestamp(),
            issued_at=now.timestamp(), via=via, spki_sha256=spki_sha256(cert), pem=pem(cert).decode(),
        )
        return cert, rec

    def _issued(self, rec: CertRecord) -> Issued:
        cert = x509.load_pem_x509_certificate(rec.pem.encode())
        return Issued(rec, self.authority.chain_pem(cert).decode(), self.authority.bundle_pem().decode())

    def _check_token(self, conn: sqlite3.Connection, th: str, spki: str, now: dt.datetime,
                     csr: x509.CertificateSigningRequest) -> tuple[Identity, Issued | None]:
        """Raise unless the token may buy a certificate for this CSR; return an earlier answer
        when this is a retry of a request that already succeeded."""
        row = Store.token(conn, th)
        if row is None:
            raise Unauthorized("bootstrap token is not known", code="unknown_token")
        ident = self.store.identity(row.identity, conn)
        assert ident is not None
        authorize_csr_identity(csr, ident.spiffe_id)
        if row.used_at is not None:
            if row.used_spki == spki and row.used_serial:
                earlier = self.store.certificate(row.used_serial, conn)
                if earlier is not None and not earlier.revoked:
                    return ident, self._issued(earlier)
            raise Unauthorized("bootstrap token was already used", code="used_token")
        if now.timestamp() >= row.expires_at:
            raise Unauthorized("bootstrap token has expired; register again for a new one", code="expired_token")
        return ident, None

    def issue(self, token: str | None, csr_pem: str, ttl_seconds: int | None = None) -> Issued:
        """Bootstrap: a one-time token buys one certificate for the token's identity.

        The token is checked, the certificate signed outside the store's write lock (signing is
        the slow part), and the token checked again and spent under the lock together with the
        record of the certificate. A certificate signed for a token that lost a race is never
        recorded nor returned. A retry with the same token and the same CSR key (the first
        answer was lost) gets the same certificate back rather than a 401: the certificate is
        public, and the key never left the requester, so this gives nothing away.
        """
        if token is None:
            raise Unauthorized("missing bootstrap token (Authorization: Bearer <token>)", code="missing_token")
        csr = parse_csr(csr_pem)
        lifetime = self._lifetime(ttl_seconds)
        spki = spki_sha256(csr)
        th = tokens.token_hash(token)
        now = self.clock.now()
        ident, earlier = self._check_token(self.store.read(), th, spki, now, csr)
        if earlier is not None:
            return earlier
        _, rec = self._sign(ident, csr, lifetime, now, "token")
        with self.store.write() as c:
            _, earlier = self._check_token(c, th, spki, now, csr)
            if earlier is not None:
                return earlier
            Store.add_certificate(c, rec)
            Store.mark_token_used(c, th, now.timestamp(), rec.serial, spki)
            Store.audit(c, now.timestamp(), ident.spiffe_id, "issue", rec.serial, "ok", "via bootstrap token")
        log_event(log, "issued", spiffe_id=ident.spiffe_id, serial=rec.serial, via="token",
                  not_after=rfc3339(dt.datetime.fromtimestamp(rec.not_after, dt.UTC)))
        return self._issued(rec)

    # -- renew ---------------------------------------------------------------------------------

    def _check_renewable(self, conn: sqlite3.Connection, leaf: x509.Certificate, now: dt.datetime,
                         claims: dict[str, object]) -> CertRecord:
        serial = serial_hex(leaf)
        rec = self.store.certificate(serial, conn)
        if rec is None or rec.pem.encode() != pem(leaf):
            raise Unauthorized(f"certificate {serial} is not known to this RA", code="unknown_certificate")
        if rec.revoked:
            raise Unauthorized(f"certificate {serial} is revoked; bootstrap again with a new token",
                               code="revoked_certificate")
        if now.timestamp() >= rec.not_after:
            raise Unauthorized(f"certificate {serial} has expired; bootstrap again with a new token",
                               code="expired_certificate")
        if claims.get("sub") != rec.spiffe_id:
            raise Unauthorized("renewal proof subject does not match the certificate", code="bad_proof")
        return rec

    def renew(self, proof: str, csr_pem: str, ttl_seconds: int | None = None) -> Issued:
        """Renewal: proof of possession of a current, unexpired, unrevoked certificate's key.

        As with `issue`, the new certificate is signed outside the write lock; the revocation
        check is repeated and the proof's nonce spent under it.
        """
        csr = parse_csr(csr_pem)
        lifetime = self._lifetime(ttl_seconds)
        chain = presented_chain(proof)
        leaf = chain.leaf
        try:
            leaf.verify_directly_issued_by(self.authority.certificate)
        except (ValueError, TypeError, InvalidSignature) as e:
            raise Unauthorized("certificate in the proof was not issued by this CA", code="unknown_certificate") from e
        now = self.clock.now()
        csr_der = csr.public_bytes(serialization.Encoding.DER)
        claims = verify_renewal_proof(proof, leaf, csr_der, now)
        rec = self._check_renewable(self.store.read(), leaf, now, claims)
        authorize_csr_identity(csr, rec.spiffe_id)
        ident = self.store.identity(rec.identity)
        assert ident is not None
        _, new = self._sign(ident, csr, lifetime, now, "renew")
        with self.store.write() as c:
            self._check_renewable(c, leaf, now, claims)
            if not Store.use_nonce(c, str(claims["jti"]), float(str(claims["exp"])) + 60, now.timestamp()):
                raise Unauthorized("renewal proof was already used", code="replayed_proof")
            Store.add_certificate(c, new)
            Store.audit(c, now.timestamp(), rec.spiffe_id, "renew", new.serial, "ok", f"replaces {rec.serial}")
        log_event(log, "issued", spiffe_id=new.spiffe_id, serial=new.serial, via="renew", replaces=rec.serial,
                  not_after=rfc3339(dt.datetime.fromtimestamp(new.not_after, dt.UTC)))
        return self._issued(new)

    # -- admin issue (break-glass), revoke -----------------------------------------------------

    def issue_direct(self, service: str, csr: x509.CertificateSigningRequest, ttl_seconds: int | None,
                     actor: str = "admin") -> Issued:
        """The admin path: no token, for a registered service (ztca issue)."""
        lifetime = self._lifetime(ttl_seconds)
        now = self.clock.now()
        with self.store.write() as c:
            ident = self.store.identity(service, c)
            if ident is None:
                raise NotFound(f"service {service!r} is not registered; run 'ztca register {service}' first",
                               code="unknown_service")
            authorize_csr_identity(csr, ident.spiffe_id)
            _, rec = self._sign(ident, csr, lifetime, now, "admin")
            Store.add_certificate(c, rec)
            Store.audit(c, now.timestamp(), actor, "issue", rec.serial, "ok", "admin path")
        log_event(log, "issued", spiffe_id=rec.spiffe_id, serial=rec.serial, via="admin")
        return self._issued(rec)

    def revoke(self, *, serial: str | None = None, service: str | None = None, reason: str | None = None,
               actor: str = "admin") -> tuple[list[str], PublishedCrl]:
        now = self.clock.now()
        if (serial is None) == (service is None):
            raise BadRequest("give exactly one of serial or service", code="bad_request")
        if serial is not None:
            s = normalise_serial(serial)
            rec = self.store.certificate(s)
            if rec is None:
                raise NotFound(f"no certificate with serial {s}", code="unknown_serial")
            serials = [s]
        else:
            assert service is not None
            if self.store.identity(service) is None:
                raise NotFound(f"service {service!r} is not registered", code="unknown_service")
            serials = Store.unexpired_serials(self.store.read(), service, now.timestamp())
        done, published = revoke_and_publish(self.store, self.authority, self.paths, now, serials=serials,
                                             reason=reason, actor=actor)
        log_event(log, "revoked", serials=done, reason=reason, crl_number=published.number)
        return done, published


def normalise_serial(text: str) -> str:
    """Accept 'AB:CD', '0xabcd', 'abcd' and print it the zt way (lowercase, no leading zeros)."""
    cleaned = text.strip().lower().replace(":", "")
    if cleaned.startswith("0x"):
        cleaned = cleaned[2:]
    try:
        value = int(cleaned, 16)
    except ValueError as e:
        raise BadRequest(f"serial {text!r} is not hexadecimal", code="bad_serial") from e
    return format(value, "x")
