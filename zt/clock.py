"""Time as a dependency: everything time-based takes a Clock, so tests can move time.

Certificates, tokens and CRLs all turn on "now"; a fake clock makes expiry, renewal points
and CRL staleness testable without sleeping.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Protocol


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> dt.datetime:
        return utcnow()


class FakeClock:
    """A clock that moves only when told to (tests)."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._now = start or utcnow()
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += dt.timedelta(seconds=seconds)


def rfc3339(t: dt.datetime) -> str:
    """UTC, second precision, trailing Z: the form every zt JSON document uses."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> dt.datetime:
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t
