"""When to renew: a pure function of the clock and the certificate, so it is easy to test.

Renew once `fraction` of the lifetime has passed (default two thirds, as the seed asks and as
cert-manager does: a third of the lifetime is left to retry in when the RA is down), moved
earlier by up to `jitter` of the lifetime so a fleet issued at the same moment does not renew
in one burst. After a failure retry sooner, but never later than the expiry itself.
"""

from __future__ import annotations

import datetime as dt
import random

DEFAULT_RENEW_FRACTION = 2 / 3
DEFAULT_JITTER = 0.1
MIN_RETRY = dt.timedelta(seconds=1)
# However short the lifetime, never renew more often than this (a guard against renew loops).
MIN_RENEW_INTERVAL = dt.timedelta(seconds=1)
MAX_RETRY = dt.timedelta(seconds=30)


def renewal_time(
    not_before: dt.datetime,
    not_after: dt.datetime,
    fraction: float = DEFAULT_RENEW_FRACTION,
    jitter: float = DEFAULT_JITTER,
    rng: random.Random | None = None,
) -> dt.datetime:
    """When to renew a certificate valid from `not_before` (or from when we got it) to `not_after`."""
    lifetime = not_after - not_before
    offset = fraction - (rng or random).uniform(0, jitter) if jitter > 0 else fraction
    return not_before + lifetime * max(0.05, min(offset, 0.95))


def should_rotate(
    now: dt.datetime, not_before: dt.datetime, not_after: dt.datetime, fraction: float = DEFAULT_RENEW_FRACTION
) -> bool:
    """True once `fraction` of the lifetime has passed (no jitter: a question, not a schedule)."""
    return now >= not_before + (not_after - not_before) * fraction


def retry_delay(now: dt.datetime, not_after: dt.datetime, failures: int) -> dt.timedelta:
    """Exponential backoff from 1 s, capped at 30 s and at a tenth of the time left."""
    backoff: dt.timedelta = MIN_RETRY * (2 ** min(failures, 10))
    left: dt.timedelta = max(not_after - now, dt.timedelta(0))
    return max(MIN_RETRY, min(backoff, MAX_RETRY, left / 10))
