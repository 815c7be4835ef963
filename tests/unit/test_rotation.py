"""When the agent renews: pure functions of time."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from zt.agent.rotation import DEFAULT_JITTER, DEFAULT_RENEW_FRACTION, renewal_time, retry_delay, should_rotate

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


def test_default_schedule_renews_at_two_thirds_of_the_lifetime() -> None:
    assert abs(DEFAULT_RENEW_FRACTION - 2 / 3) < 1e-9
    assert renewal_time(T0, T0 + HOUR, jitter=0.0) == T0 + HOUR * (2 / 3)
    assert not should_rotate(T0 + dt.timedelta(minutes=39), T0, T0 + HOUR)
    assert should_rotate(T0 + dt.timedelta(minutes=40), T0, T0 + HOUR)


def test_default_jitter_moves_renewal_only_earlier_within_a_tenth_of_the_lifetime() -> None:
    rng = random.Random(11)
    thirty = dt.timedelta(seconds=30)  # the lab's short certificates
    times = [renewal_time(T0, T0 + thirty, rng=rng) for _ in range(500)]
    earliest, latest = T0 + thirty * (2 / 3 - DEFAULT_JITTER), T0 + thirty * (2 / 3)
    assert all(earliest <= t <= latest for t in times)
    # spread over the whole window, not bunched at one end: a fleet does not renew in one burst
    assert min(times) < earliest + thirty * 0.02 and max(times) > latest - thirty * 0.02


@pytest.mark.parametrize("fraction", [0.5, 0.6667, 0.8])
def test_renew_at_keeps_choosing_the_fraction(fraction: float) -> None:
    assert renewal_time(T0, T0 + HOUR, fraction, 0.0) == T0 + HOUR * fraction
