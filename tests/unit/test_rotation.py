"""When the agent renews: pure functions of time."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from zt.agent.rotation import renewal_time, retry_delay, should_rotate

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


@pytest.mark.parametrize(
    "elapsed, fraction, expected",
    [
        (dt.timedelta(minutes=29), 0.5, False),
        (dt.timedelta(minutes=30), 0.5, True),
        (dt.timedelta(minutes=44), 0.75, False),
        (dt.timedelta(minutes=46), 0.75, True),
        (dt.timedelta(hours=2), 0.5, True),
    ],
)
def test_should_rotate_at_fraction_of_lifetime(elapsed: dt.timedelta, fraction: float, expected: bool) -> None:
    assert should_rotate(T0 + elapsed, T0, T0 + HOUR, fraction) is expected


def test_renewal_time_has_jitter_only_earlier_and_bounded() -> None:
    rng = random.Random(7)
    times = [renewal_time(T0, T0 + HOUR, 0.5, 0.1, rng) for _ in range(200)]
    assert all(T0 + HOUR * 0.4 <= t <= T0 + HOUR * 0.5 for t in times)
    assert len(set(times)) > 100
    assert renewal_time(T0, T0 + HOUR, 0.5, 0.0) == T0 + HOUR * 0.5


def test_retry_delay_backs_off_but_never_past_a_tenth_of_time_left() -> None:
    now = T0
    delays = [retry_delay(now, now + HOUR, n) for n in range(1, 8)]
    assert delays == sorted(delays)
    assert max(delays) == dt.timedelta(seconds=30)
    assert retry_delay(now, now + dt.timedelta(seconds=20), 5) == dt.timedelta(seconds=2)
    assert retry_delay(now, now - dt.timedelta(seconds=5), 3) == dt.timedelta(seconds=1)
