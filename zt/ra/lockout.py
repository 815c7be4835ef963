"""Token brute-force protection: failed bootstrap- and admin-token attempts, counted per source.

A token is 256 random bits looked up by its SHA-256 (zt.ra.tokens), so guessing one is
hopeless at any rate an RA answers; what this adds is that a source presenting wrong tokens
is slowed to a crawl, shows up once per lockout in the log, the audit trail and
`ra_lockouts_total`, and cannot use the RA as an oracle for a token list (docs/rate-limits.md).

- Each wrong token (`unknown_token`, `invalid_credential`) from a source adds one failure for
  that source and credential; past `threshold` failures the source is locked out for
  `base * 2**(failures - threshold)` seconds, at most `max` (zt.ra.limits.LockoutPolicy).
- While locked out, the source's requests with that credential get 429 `locked_out` before
  any token is looked at, a correct one included, and they count no further failures: a
  client retrying fast does not lengthen its own lockout, and an attacker gets one guess per
  backoff. Other sources are not affected.
- A correct token from the source forgets its failures; so does a quiet time of `max`.
- Nothing of a wrong token is stored or logged: only the source address, the credential kind,
  the count and two times.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from zt.clock import Clock
from zt.errors import RateLimited
from zt.logjson import log_event
from zt.ra import metrics
from zt.ra.limits import LockoutPolicy, retry_after_header
from zt.ra.store_api import FailureRow, StateStore

log = logging.getLogger("zt.ra")


@dataclass(frozen=True)
class Attempt:
    """What `Lockout.check` saw of a source before its token is looked at."""

    source: str | None
    credential: str
    had_failures: bool = False


class Lockout:
    def __init__(self, store: StateStore, policy: LockoutPolicy, clock: Clock) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock

    def reads(self, source: str | None) -> bool:
        """Whether `check` needs the source's failures (a caller that reads them itself, with
        the token in one statement: zt.ra.service, passes them to `judge`)."""
        return source is not None and self.policy.enabled

    def check(self, source: str | None, credential: str) -> Attempt:
        """Raise RateLimited `locked_out` if `source` is locked out for `credential` (one read)."""
        if source is None or not self.policy.enabled:
            return Attempt(source, credential)
        return self.judge(source, credential, self.store.token_failures(self.store.read(), source, credential))

    def judge(self, source: str | None, credential: str, row: FailureRow | None) -> Attempt:
        """`check` on the source's failures as read already (`row`; None: it has none)."""
        if source is None or row is None or not self.policy.enabled:
            return Attempt(source, credential)
        now = self.clock.now().timestamp()
        if row.locked_until is not None and row.locked_until > now and row.forget_at > now:
            raise self._locked_out(source, credential, row.failures, row.locked_until - now, started=False)
        return Attempt(source, credential, had_failures=True)

    def failed(self, attempt: Attempt) -> None:
        """Count one wrong token; raise RateLimited `locked_out` if this one starts a lockout."""
        metrics.TOKEN_FAILURES.labels(attempt.credential).inc()
        source = attempt.source
        if source is None or not self.policy.enabled:
            return
        now = self.clock.now().timestamp()
        with self.store.write() as c:
            row = self.store.token_failures(c, source, attempt.credential)
            failures = 1 if row is None or row.forget_at <= now else row.failures + 1
            backoff = self.policy.backoff(failures)
            locked_until = now + backoff if backoff > 0 else None
            self.store.set_token_failures(
                c, source, attempt.credential, failures, now, locked_until, self.policy.forget_at(now, locked_until)
            )
            if locked_until is not None:
                self.store.audit(
                    c,
                    now,
                    f"source:{source}",
                    "locked_out",
                    attempt.credential,
                    "refused",
                    f"{failures} failed {attempt.credential} attempts; locked out for {backoff:g}s",
                )
        if locked_until is not None:
            metrics.LOCKOUTS.labels(attempt.credential).inc()
            raise self._locked_out(source, attempt.credential, failures, backoff, started=True)

    def succeeded(self, attempt: Attempt) -> None:
        """A correct token: forget the source's failures (a write only if it had any)."""
        if attempt.source is not None and attempt.had_failures:
            with self.store.write() as c:
                self.store.clear_token_failures(c, attempt.source, attempt.credential)

    @staticmethod
    def _locked_out(source: str, credential: str, failures: int, retry: float, *, started: bool) -> RateLimited:
        log_event(
            log,
            "locked_out",
            logging.WARNING if started else logging.INFO,
            source=source,
            credential=credential,
            failures=failures,
            retry_after=round(retry, 3),
            started=started,
        )
        return RateLimited(
            f"too many failed {credential.replace('_', ' ')} attempts from {source}; "
            f"locked out, retry after {retry_after_header(retry)}s",
            retry_after=retry,
            code="locked_out",
        )
