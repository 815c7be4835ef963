"""Enforcing the RA's rate limits and token lockouts (zt.ra.limits) on state in the store.

Why the store and not memory: the RA runs several worker processes (`--workers`) and is
restarted; a limit kept per process would let `workers` times the limit through, and a
restart would forget it. The store is already shared by every worker and survives a kill, so
the limits hold across both. Each decision is one short write transaction under the store's
write lock, which makes check-and-count atomic across processes:

- a limit is a strict sliding window: one `rate_hits` row per request let through, and a
  request is refused while `count` of them lie within the last `period` (zt.ra.store);
- a request that is over its limit is refused after a lock-free read (the count can only
  grow under it), so a flood of refused requests does not queue on the write lock;
- the per-identity limit is checked twice like every other authorisation decision: before
  signing (so a refused request costs no signature) and in the same transaction that records
  the certificate (so two workers cannot both let the 11th through), adding one indexed count
  and one insert to a transaction that is there anyway.

What the operator sees of a refusal: every 429 is one log line (`rate_limited` or
`locked_out`, docs/logs.md) and counted (`ra_rate_limited_total{limit}`,
`ra_lockouts_total{credential}`, `ra_token_failures_total{credential}`); a key's refusals are
audited at most once per window period, and every start of a lockout is audited
(`StateStore.audit`), so a flood cannot turn each refused request into an audit record.
Only authenticated requests count against an identity, so nobody can spend another
service's budget; the source address is the TCP peer (uvicorn's proxy headers are off).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from zt.clock import Clock
from zt.errors import RateLimited
from zt.logjson import log_event
from zt.ra import metrics
from zt.ra.limits import ISSUE_PER_IDENTITY, REQUESTS_PER_SOURCE, Limits, Rate, retry_after_header
from zt.ra.store_api import IDENTITY_KEY, SOURCE_KEY, Conn, StateStore, Window

log = logging.getLogger("zt.ra")


def _retry_after(conn: Conn, key: str, rate: Rate, now: float) -> float | None:
    """None if one more request for `key` fits in the window now, else seconds until one does."""
    blocking = StateStore.rate_window(conn, key, now - rate.period, rate.count)
    return None if blocking is None else max(0.0, blocking + rate.period - now)


@dataclass
class SourceTicket:
    """One request from `source` whose count is taken later (in the issuance transaction, or
    after the answer); `settled` once it was counted or refused there."""

    source: str
    endpoint: str
    settled: bool = False


class RateLimiter:
    """The limits of one RA process, on `store` (which may be a second handle on the RA's
    store file with relaxed fsync: see `zt.ra.app`)."""

    def __init__(self, store: StateStore, limits: Limits, clock: Clock) -> None:
        self.store = store
        self.limits = limits
        self.clock = clock

    # -- per source address: every request (zt.ra.http_errors.SourceLimit) ------------------

    def admit_source(self, source: str, endpoint: str) -> None:
        """Count one request from `source`, or raise RateLimited if it is over the limit."""
        rate = self.limits.source
        if not rate.enabled:
            return
        self.check_source(source, endpoint)
        key, now = f"{SOURCE_KEY}{source}", self.clock.now().timestamp()
        with self.store.write() as c:
            retry = _retry_after(c, key, rate, now)
            if retry is None:
                self.store.add_rate_hit(c, key, now)
                return
            self._audit_first_refusal(c, key, now, source, REQUESTS_PER_SOURCE, rate, retry, endpoint)
        raise self.refused(REQUESTS_PER_SOURCE, source, rate, retry, endpoint)

    def check_source(self, source: str, endpoint: str) -> None:
        """Refuse `source` if it is over its limit now (a read; counts nothing)."""
        retry = self.source_retry(source)
        if retry is not None:
            raise self.refuse_source(source, endpoint, retry)

    def source_retry(self, source: str) -> float | None:
        """None if one more request from `source` fits in its window now, else seconds until one
        does: one indexed read, no lock and no write, cheap enough for the event loop
        (zt.ra.http_errors.SourceLimit runs it there)."""
        rate = self.limits.source
        if not rate.enabled:
            return None
        return _retry_after(self.store.read(), f"{SOURCE_KEY}{source}", rate, self.clock.now().timestamp())

    def refuse_source(self, source: str, endpoint: str, retry: float) -> RateLimited:
        """A refusal of `source` by `source_retry`: audited (at most once per window: a write),
        logged and counted; returns the exception to raise."""
        rate, now = self.limits.source, self.clock.now().timestamp()
        self._first_refusal(f"{SOURCE_KEY}{source}", now, source, REQUESTS_PER_SOURCE, rate, retry, endpoint)
        return self.refused(REQUESTS_PER_SOURCE, source, rate, retry, endpoint)

    # /v1/issue and /v1/renew: the source's count is taken in the transaction that records the
    # certificate (one write transaction per issuance, not two; measured in docs/rate-limits.md),
    # or, when the request ends before it (refused, a bad CSR, a retried token), right after the
    # answer (`count_source`).

    def take_source(self, conn: Conn, ticket: SourceTicket, now: float) -> float | None:
        """In the recording transaction: count the request, or return seconds until it would fit
        (a request that raced past `check_source`); either way the ticket is settled."""
        rate = self.limits.source
        ticket.settled = True
        if not rate.enabled:
            return None
        key = f"{SOURCE_KEY}{ticket.source}"
        retry = _retry_after(conn, key, rate, now)
        if retry is None:
            self.store.add_rate_hit(conn, key, now)
            return None
        self._audit_first_refusal(conn, key, now, ticket.source, REQUESTS_PER_SOURCE, rate, retry, ticket.endpoint)
        return retry

    def count_source(self, ticket: SourceTicket) -> None:
        """After the answer: count a request that was let through but never reached `take_source`."""
        rate = self.limits.source
        if ticket.settled or not rate.enabled:
            return
        ticket.settled = True
        key, now = f"{SOURCE_KEY}{ticket.source}", self.clock.now().timestamp()
        with self.store.write() as c:
            self.store.add_rate_hit(c, key, now)

    # -- per identity: /v1/issue and /v1/renew (zt.ra.service) ------------------------------

    def precheck_identity(self, identity: str, actor: str, endpoint: str) -> None:
        """Before signing: refuse an identity that is already over its limit (a read)."""
        window = self.identity_window()
        if window is not None:
            key = f"{IDENTITY_KEY}{identity}"
            blocking = StateStore.rate_window(self.store.read(), key, window.since, window.limit)
            self.judge_identity(identity, actor, endpoint, window, blocking)

    def identity_window(self) -> Window | None:
        """The per-identity window now, for a caller that reads it with the token in one
        statement (`StateStore.token_read`, zt.ra.service); None when the limit is off."""
        rate = self.limits.issue
        return Window(self.clock.now().timestamp() - rate.period, rate.count) if rate.enabled else None

    def judge_identity(
        self, identity: str, actor: str, endpoint: str, window: Window | None, blocking: float | None
    ) -> None:
        """`precheck_identity` on the window as read already (`blocking`: the hit whose expiry
        lets one more through, None if one fits)."""
        if window is None or blocking is None:
            return
        rate = self.limits.issue
        now = window.since + rate.period
        retry = max(0.0, blocking + rate.period - now)
        self._first_refusal(f"{IDENTITY_KEY}{identity}", now, actor, ISSUE_PER_IDENTITY, rate, retry, endpoint)
        raise self.refused(ISSUE_PER_IDENTITY, identity, rate, retry, endpoint)

    def take_identity(self, conn: Conn, identity: str, actor: str, endpoint: str, now: float) -> float | None:
        """In the caller's write transaction (the one recording the certificate): count one
        issuance for `identity`, or return the seconds until one would fit (nothing counted;
        the caller records nothing and raises `refused(...)` after committing)."""
        rate = self.limits.issue
        if not rate.enabled:
            return None
        key = f"{IDENTITY_KEY}{identity}"
        retry = _retry_after(conn, key, rate, now)
        if retry is None:
            self.store.add_rate_hit(conn, key, now)
            return None
        self._audit_first_refusal(conn, key, now, actor, ISSUE_PER_IDENTITY, rate, retry, endpoint)
        return retry

    # -- refusals ----------------------------------------------------------------------------

    def refused(self, limit: str, key: str, rate: Rate, retry: float, endpoint: str) -> RateLimited:
        """Log and count one refusal; the exception the HTTP boundary turns into 429."""
        metrics.RATE_LIMITED.labels(limit).inc()
        log_event(log, "rate_limited", limit=limit, key=key, retry_after=round(retry, 3), endpoint=endpoint)
        what = "issuances for" if limit == ISSUE_PER_IDENTITY else "requests from"
        return RateLimited(
            f"too many {what} {key}: at most {rate.count} per {rate.period:g}s; "
            f"retry after {retry_after_header(retry)}s",
            retry_after=retry,
        )

    def _first_refusal(
        self, key: str, now: float, actor: str, limit: str, rate: Rate, retry: float, endpoint: str
    ) -> None:
        since = self.store.refusing_since(self.store.read(), key)
        if since is not None and since >= now - rate.period:
            return  # this key's refusals were audited less than a window ago
        with self.store.write() as c:
            self._audit_first_refusal(c, key, now, actor, limit, rate, retry, endpoint)

    @staticmethod
    def _audit_first_refusal(
        conn: Conn,
        key: str,
        now: float,
        actor: str,
        limit: str,
        rate: Rate,
        retry: float,
        endpoint: str,
    ) -> None:
        if StateStore.start_refusing(conn, key, now, now - rate.period):
            StateStore.audit(
                conn,
                now,
                actor,
                "rate_limited",
                key,
                "refused",
                f"{limit} {rate} on {endpoint}; refusing for {retry:.3f}s; "
                f"further refusals of {key} within {rate.period:g}s are logged and counted, not audited",
            )

    # -- housekeeping ------------------------------------------------------------------------

    def purge(self) -> int:
        """Drop hits that left every window and failure counts past their forget time."""
        now = self.clock.now().timestamp()
        longest = max(self.limits.issue.period, self.limits.source.period)
        with self.store.write() as c:
            return self.store.purge_rate_state(c, now - longest, now)
