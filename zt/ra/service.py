"""The RA's operations, independent of HTTP: register, issue, renew, revoke.

Each operation authorises first (zt.ra.authorize: token, renewal proof, admin credential),
then asks the CA to sign outside the store's write lock (signing is the slow part), then
authorises again and records under the lock, in one transaction, so a kill at any moment
leaves either nothing or everything (token spent + certificate recorded), and a concurrent
revocation always wins: a certificate signed for a request that lost a race is never recorded
nor returned. The HTTP layer (zt.ra.app) only maps requests and errors.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from zt.ca.authority import Authority
from zt.ca.layout import CaPaths
from zt.clock import Clock, rfc3339
from zt.errors import BadRequest, NotFound, SvidError, Unauthorized
from zt.logjson import log_event
from zt.pki.encoding import pem, serial_hex
from zt.pki.renewal_proof import presented_chain, verify_renewal_proof
from zt.ra import tokens
from zt.ra.authorize import (
    MIN_LEAF_TTL,
    AdminGrant,
    Grant,
    authorize_admin,
    authorize_admin_issue,
    authorize_lifetime,
    authorize_proof_chain,
    authorize_registration,
    authorize_renewal,
    authorize_token,
)
from zt.ra.csr import parse_csr, spki_sha256
from zt.ra.group_commit import GroupCommit
from zt.ra.limits import ADMIN_TOKEN, BOOTSTRAP_TOKEN, ISSUE_PER_IDENTITY, REQUESTS_PER_SOURCE, Limits
from zt.ra.lockout import Lockout
from zt.ra.ratelimit import RateLimiter, SourceTicket
from zt.ra.revocation import PublishedCrl, revoke_and_publish, revoke_identity_and_publish
from zt.ra.signed_issue import IssueOutcome, IssueRecorder, SignedIssue
from zt.ra.store_api import CertRecord, Conn, Identity, StateStore
from zt.spiffe import parse_spiffe_id, validate_service_name, workload_id

log = logging.getLogger("zt.ra")

__all__ = [
    "DEFAULT_LEAF_TTL",
    "DEFAULT_TOKEN_TTL",
    "MIN_LEAF_TTL",
    "Issued",
    "Registered",
    "RegistrationAuthority",
    "normalise_serial",
]

DEFAULT_LEAF_TTL = dt.timedelta(hours=1)
# The endpoints whose issuances count against an identity's limit (the log's `endpoint`).
ISSUE_ENDPOINT = "/v1/issue"
RENEW_ENDPOINT = "/v1/renew"
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
    def __init__(
        self,
        store: StateStore,
        authority: Authority,
        paths: CaPaths,
        clock: Clock,
        *,
        leaf_ttl: dt.timedelta = DEFAULT_LEAF_TTL,
        crl_url: str | None = None,
        limits: Limits | None = None,
        committer: GroupCommit | None = None,
    ) -> None:
        if leaf_ttl < MIN_LEAF_TTL:
            raise BadRequest(f"leaf lifetime must be at least {int(MIN_LEAF_TTL.total_seconds())}s")
        self.store = store
        self.authority = authority
        self.paths = paths
        self.clock = clock
        self.leaf_ttl = leaf_ttl
        self.crl_url = crl_url
        # No limits unless given: `ztca` runs this in-process for an operator (zt.ra.app gives
        # the RA's configured ones).
        limits = limits or Limits.off()
        self.limiter = RateLimiter(store, limits, clock)
        self.lockout = Lockout(store, limits.lockout, clock)
        # The RA's HTTP workers batch issuances' recording transactions (zt.ra.group_commit);
        # in-process callers (ztca) record each in its own. With a `recorder` (the host's
        # recorder process, zt.ra.commit_server) the batches are shared by every worker.
        self.committer = committer
        self.recorder: IssueRecorder | None = None

    def authorize_admin(self, token: str | None, source: str | None = None) -> AdminGrant:
        """The admin credential; wrong ones count against `source` (zt.ra.lockout)."""
        if token is None:
            return authorize_admin(self.store, token)  # 401 missing_credential: not a guess
        attempt = self.lockout.check(source, ADMIN_TOKEN)
        try:
            grant = authorize_admin(self.store, token)
        except Unauthorized as e:
            if e.code == "invalid_credential":
                self.lockout.failed(attempt)
            raise
        self.lockout.succeeded(attempt)
        return grant

    def record_refusal(self, credential: str, code: str, source: str | None, endpoint: str) -> None:
        """Audit a refused bootstrap or admin token: which kind, why, from where (never the token).

        Its own write transaction, so the line is in the audit log before the 401 goes out
        (zt.ra.http_errors calls this for the refusal codes in REFUSED_CREDENTIALS).
        """
        with self.store.write() as c:
            self.store.audit(
                c,
                self.clock.now().timestamp(),
                source or "unknown",
                "refuse",
                credential,
                "refused",
                f"{code} on {endpoint}",
            )

    # -- register ------------------------------------------------------------------------------

    def register(
        self, service: str, token_ttl: dt.timedelta = DEFAULT_TOKEN_TTL, actor: str = "admin", *, reenable: bool = False
    ) -> Registered:
        """Create (or keep) the service's identity and mint a one-time bootstrap token.

        A revoked identity stays revoked unless `reenable` is given (`ztca register --reenable`):
        then it may be issued certificates again; its old certificates stay revoked.
        """
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
            existing = self.store.identity(service, c)
            authorize_registration(service, existing, reenable=reenable)
            if existing is not None and existing.revoked:
                self.store.reenable_identity(c, service)
                self.store.audit(
                    c,
                    now.timestamp(),
                    actor,
                    "reenable",
                    sid,
                    "ok",
                    f"revoked at {existing.revoked_at} ({existing.revocation_reason})",
                )
            ident = self.store.ensure_identity(c, service, sid, now.timestamp())
            self.store.add_token(c, tokens.token_hash(token), service, now.timestamp(), expires.timestamp())
            self.store.audit(c, now.timestamp(), actor, "register", sid, "ok", f"token expires {rfc3339(expires)}")
        log_event(log, "registered", service=service, spiffe_id=sid, token_expires=rfc3339(expires), actor=actor)
        return Registered(ident, token, expires)

    # -- signing and recording -----------------------------------------------------------------

    def _sign(
        self, grant: Grant, csr: x509.CertificateSigningRequest, now: dt.datetime, spki: str | None = None
    ) -> CertRecord:
        """Sign `csr`'s key for the grant. `spki` is the CSR key's SPKI hash if the caller has
        it: the leaf carries that same key, so it is not hashed again."""
        ident = grant.identity
        # A CaError (an expired intermediate, unreadable CA files) propagates as itself: the
        # HTTP boundary answers 503 ca_unavailable, not "cannot reach its store".
        cert = self.authority.sign_leaf(
            csr.public_key(),  # type: ignore[arg-type]
            parse_spiffe_id(ident.spiffe_id),
            grant.lifetime,
            now,
            self.crl_url,
        )
        rec = CertRecord(
            serial=serial_hex(cert),
            identity=ident.name,
            spiffe_id=ident.spiffe_id,
            not_before=cert.not_valid_before_utc.timestamp(),
            not_after=cert.not_valid_after_utc.timestamp(),
            issued_at=now.timestamp(),
            via=grant.via,
            spki_sha256=spki if spki is not None else spki_sha256(cert),
            pem=pem(cert).decode(),
            renews=grant.renews,
        )
        return rec

    def _issued(self, rec: CertRecord) -> Issued:
        """The answer: the record's own PEM (as signed, or as stored) is the chain's first part."""
        return Issued(rec, self.authority.chain_pem_of(rec.pem.encode()).decode(), self.authority.bundle_pem().decode())

    # -- issue ---------------------------------------------------------------------------------

    def issue(
        self,
        token: str | None,
        csr_pem: str,
        ttl_seconds: int | None = None,
        source: str | None = None,
        ticket: SourceTicket | None = None,
    ) -> Issued:
        """Bootstrap: a one-time token buys one certificate for the token's identity.

        A source locked out for wrong tokens is refused before its token is looked at; an
        unknown token counts against it (zt.ra.lockout). The identity's issuance limit is
        checked before signing and counted in the transaction that records the certificate.
        With a `committer` (zt.ra.group_commit) that transaction is shared with the other
        issuances pending at the time; without one it is this request's own.
        """
        signed = self._sign_issue(token, csr_pem, ttl_seconds, source, ticket)
        if isinstance(signed, Issued):
            return signed
        if self.committer is not None:
            outcome = self.committer.run(lambda c: self.record_issue(c, signed))
        else:
            with self.store.write() as c:
                outcome = self.record_issue(c, signed)
        return self._issue_answer(signed, outcome)

    async def issue_async(
        self,
        token: str | None,
        csr_pem: str,
        ttl_seconds: int | None = None,
        source: str | None = None,
        ticket: SourceTicket | None = None,
    ) -> Issued:
        """`issue` for an event loop: the checks and the signing run inline (a fraction of a
        millisecond, no thread hand-off), and the loop waits for the group commit without
        blocking. Needs a committer or a recorder."""
        if self.committer is None and self.recorder is None:
            raise RuntimeError("issue_async needs a group commit writer")
        signed = self._sign_issue(token, csr_pem, ttl_seconds, source, ticket)
        if isinstance(signed, Issued):
            return signed
        if self.recorder is not None:
            outcome = await self.recorder.record(signed)
        else:
            assert self.committer is not None
            outcome = await self.committer.run_async(lambda c: self.record_issue(c, signed))
        return self._issue_answer(signed, outcome)

    def _sign_issue(
        self,
        token: str | None,
        csr_pem: str,
        ttl_seconds: int | None,
        source: str | None,
        ticket: SourceTicket | None,
    ) -> Issued | SignedIssue:
        """Everything before the recording transaction: the checks (read-only, except the
        lockout's count of a wrong token) and the signature. An idempotent retry of a token
        already spent on this key gets its earlier certificate here."""
        if token is None:
            raise Unauthorized("missing bootstrap token (Authorization: Bearer <token>)", code="missing_token")
        # One read for the lockout's row, the token with its identity, and the identity's
        # issuance window. The lockout decides first, on its row alone: a locked-out source is
        # refused whatever its token.
        th = tokens.token_hash(token)
        reads = self.store.read()
        window = self.limiter.identity_window()
        lockout_source = source if self.lockout.reads(source) else None
        read = StateStore.token_read(reads, th, lockout_source, BOOTSTRAP_TOKEN, window)
        attempt = self.lockout.judge(source, BOOTSTRAP_TOKEN, read.failures)
        csr = parse_csr(csr_pem)
        lifetime = authorize_lifetime(ttl_seconds, self.leaf_ttl)
        spki = spki_sha256(csr)
        now = self.clock.now()
        try:
            grant = authorize_token(self.store, reads, read, csr, spki, now, lifetime)
        except Unauthorized as e:
            if e.code == "unknown_token":
                self.lockout.failed(attempt)
            raise
        self.lockout.succeeded(attempt)
        if grant.earlier is not None:
            return self._issued(grant.earlier)
        ident = grant.identity
        self.limiter.judge_identity(ident.name, ident.spiffe_id, ISSUE_ENDPOINT, window, read.identity_blocking)
        rec = self._sign(grant, csr, now, spki)
        return SignedIssue(grant, csr, csr_pem, spki, th, now, lifetime, ticket, rec)

    def record_issue(self, c: Conn, s: SignedIssue) -> IssueOutcome:
        """In the write transaction: authorise again, count the limits, spend the token, record.

        Returns the earlier certificate of an idempotent retry, the refusal of a limit (returned,
        not raised: its count and audit row commit), or None when `s` was recorded.
        """
        read = StateStore.token_read(c, s.token_hash)
        again = authorize_token(self.store, c, read, s.csr, s.spki, s.now, s.lifetime)
        if again.earlier is not None:
            return again.earlier
        ident, rec, now = s.grant.identity, s.record, s.now.timestamp()
        over_source, retry = self._take_limits(c, s.ticket, ident, ISSUE_ENDPOINT, now)
        if retry is not None:
            return self._refused(over_source, s.ticket, ident, retry, ISSUE_ENDPOINT)
        self.store.add_certificate(c, rec)
        self.store.mark_token_used(c, s.token_hash, now, rec.serial, s.spki)
        self.store.audit(c, now, rec.spiffe_id, "issue", rec.serial, "ok", "via bootstrap token")
        return None

    def _issue_answer(self, s: SignedIssue, outcome: IssueOutcome) -> Issued:
        if isinstance(outcome, Exception):
            raise outcome
        if outcome is not None:
            return self._issued(outcome)
        rec = s.record
        log_event(
            log,
            "issued",
            spiffe_id=rec.spiffe_id,
            serial=rec.serial,
            via="token",
            actor=s.grant.identity.name,  # who asked: the identity the token was issued to
            not_after=rfc3339(dt.datetime.fromtimestamp(rec.not_after, dt.UTC)),
        )
        return self._issued(rec)

    # -- renew ---------------------------------------------------------------------------------

    def _take_limits(
        self, conn: Conn, ticket: SourceTicket | None, ident: Identity, endpoint: str, now: float
    ) -> tuple[bool, float | None]:
        """In the recording transaction: the source's count (if the HTTP layer left it to this
        transaction), then the identity's. (over the source limit?, seconds to wait or None)."""
        if ticket is not None:
            retry = self.limiter.take_source(conn, ticket, now)
            if retry is not None:
                return True, retry
        return False, self.limiter.take_identity(conn, ident.name, ident.spiffe_id, endpoint, now)

    def _refused(
        self, over_source: bool, ticket: SourceTicket | None, ident: Identity, retry: float, endpoint: str
    ) -> Exception:
        limits = self.limiter.limits
        if over_source and ticket is not None:
            return self.limiter.refused(REQUESTS_PER_SOURCE, ticket.source, limits.source, retry, endpoint)
        return self.limiter.refused(ISSUE_PER_IDENTITY, ident.name, limits.issue, retry, endpoint)

    def renew(
        self, proof: str, csr_pem: str, ttl_seconds: int | None = None, ticket: SourceTicket | None = None
    ) -> Issued:
        """Renewal: proof of possession of a current, unexpired, unrevoked certificate's key.

        The renewal is authorised again under the write lock (a revocation of the certificate,
        of its identity or of an ancestor for key compromise may have committed meanwhile) and
        the proof's nonce spent there.
        """
        csr = parse_csr(csr_pem)
        lifetime = authorize_lifetime(ttl_seconds, self.leaf_ttl)
        now = self.clock.now()
        leaf = authorize_proof_chain(self.authority, presented_chain(proof), now)
        csr_der = csr.public_bytes(serialization.Encoding.DER)
        claims = verify_renewal_proof(proof, leaf, csr_der, now)
        grant = authorize_renewal(self.store, self.store.read(), leaf, claims, csr, now, lifetime)
        ident = grant.identity
        self.limiter.precheck_identity(ident.name, ident.spiffe_id, RENEW_ENDPOINT)
        new = self._sign(grant, csr, now)
        with self.store.write() as c:
            authorize_renewal(self.store, c, leaf, claims, csr, now, lifetime)
            if not self.store.use_nonce(c, str(claims["jti"]), float(str(claims["exp"])) + 60, now.timestamp()):
                raise Unauthorized("renewal proof was already used", code="replayed_proof")
            # A refused renewal still spends its proof (the agent makes a new one per attempt).
            over_source, retry = self._take_limits(c, ticket, ident, RENEW_ENDPOINT, now.timestamp())
            if retry is None:
                self.store.add_certificate(c, new)
                self.store.audit(
                    c, now.timestamp(), new.spiffe_id, "renew", new.serial, "ok", f"replaces {grant.renews}"
                )
        if retry is not None:
            raise self._refused(over_source, ticket, ident, retry, RENEW_ENDPOINT)
        log_event(
            log,
            "issued",
            spiffe_id=new.spiffe_id,
            serial=new.serial,
            via="renewal",
            # who asked: the presented certificate, on record under this identity's SPIFFE ID
            # (authorize_renewal checked), and the serial it renews
            actor=new.spiffe_id,
            renews=grant.renews,
            not_after=rfc3339(dt.datetime.fromtimestamp(new.not_after, dt.UTC)),
        )
        return self._issued(new)

    # -- admin issue (break-glass), revoke -----------------------------------------------------

    def issue_direct(
        self, service: str, csr: x509.CertificateSigningRequest, ttl_seconds: int | None, actor: str = "admin"
    ) -> Issued:
        """The admin path: no token, for a registered, unrevoked service (ztca issue).

        Signed outside the write lock like the HTTP paths, and authorised again under it.
        """
        lifetime = authorize_lifetime(ttl_seconds, self.leaf_ttl)
        now = self.clock.now()
        grant = authorize_admin_issue(self.store, self.store.read(), service, csr, lifetime)
        rec = self._sign(grant, csr, now)
        with self.store.write() as c:
            authorize_admin_issue(self.store, c, service, csr, lifetime)
            self.store.add_certificate(c, rec)
            self.store.audit(c, now.timestamp(), actor, "issue", rec.serial, "ok", "admin path")
        log_event(
            log,
            "issued",
            spiffe_id=rec.spiffe_id,
            serial=rec.serial,
            via="admin",
            actor=actor,
            not_after=rfc3339(dt.datetime.fromtimestamp(rec.not_after, dt.UTC)),
        )
        return self._issued(rec)

    def revoke(
        self, *, serial: str | None = None, service: str | None = None, reason: str | None = None, actor: str = "admin"
    ) -> tuple[list[str], PublishedCrl]:
        """Revoke one certificate (and, for key compromise, everything renewed from it), or a
        whole service (zt.ra.revocation.revoke_identity_and_publish); publish a CRL either way."""
        now = self.clock.now()
        if (serial is None) == (service is None):
            raise BadRequest("give exactly one of serial or service", code="bad_request")
        if serial is not None:
            s = normalise_serial(serial)
            if self.store.certificate(s) is None:
                raise NotFound(f"no certificate with serial {s}", code="unknown_serial")
            done, published = revoke_and_publish(
                self.store, self.authority, self.paths, now, serials=[s], reason=reason, actor=actor
            )
        else:
            assert service is not None
            done, published = revoke_identity_and_publish(
                self.store, self.authority, self.paths, now, service=service, reason=reason, actor=actor
            )
        log_event(
            log, "revoked", serials=done, service=service, reason=reason, actor=actor, crl_number=published.number
        )
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
