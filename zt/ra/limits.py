"""What an operator configured: the RA's rate limits and the token lockout policy, as values.

Pure and light on purpose: `zt.ra.settings` carries these to every worker process (as JSON),
and `zt-ra` parses them before the workers start, so this module imports nothing that
registers metrics or opens the store. Enforcing them is `zt.ra.ratelimit`.

- `Rate(count, period)`: at most `count` requests in any window of `period` seconds (a
  sliding window, strict: the 11th issuance within a minute under `10/1m` is refused however
  the first ten were spread). `count == 0` turns the limit off.
- `LockoutPolicy(threshold, base, max)`: after `threshold` failed token attempts from one
  source, that source is locked out for `base * 2**(failures - threshold)` seconds, at most
  `max`; `threshold == 0` turns lockout off.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

from zt.durations import parse_duration

# Credentials whose failed attempts are counted per source (the log's `credential` field).
BOOTSTRAP_TOKEN = "bootstrap_token"
ADMIN_TOKEN = "admin_token"
# The two rate limits (the log's and the metric's `limit` field).
ISSUE_PER_IDENTITY = "issue_per_identity"
REQUESTS_PER_SOURCE = "requests_per_source"


@dataclass(frozen=True)
class Rate:
    """At most `count` requests in any `period` seconds; `count == 0`: no limit."""

    count: int
    period: float

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"a rate's count must be 0 (off) or more, got {self.count}")
        if not self.period > 0:
            raise ValueError(f"a rate's period must be more than 0 seconds, got {self.period}")

    @property
    def enabled(self) -> bool:
        return self.count > 0

    def __str__(self) -> str:
        return f"{self.count}/{self.period:g}s" if self.enabled else "off"


def parse_rate(text: str) -> Rate:
    """'10/1m', '600/1m', '3/5s', '100/m' (a bare unit is one of it); '0' or '0/1m' is off."""
    raw = text.strip().lower()
    if raw in ("0", "off"):
        return Rate(0, 60.0)
    count, sep, per = raw.partition("/")
    if not sep or not count.strip().isdigit():
        raise argparse.ArgumentTypeError(f"invalid rate {text!r}: use N/PERIOD, e.g. 10/1m, 600/1m, 3/5s; 0 is off")
    per = per.strip()
    if per in ("s", "m", "h", "d"):
        per = "1" + per
    period = parse_duration(per).total_seconds()
    if not period > 0:
        raise argparse.ArgumentTypeError(f"invalid rate {text!r}: the period must be more than 0")
    return Rate(int(count), period)


@dataclass(frozen=True)
class LockoutPolicy:
    """How a source that presents wrong tokens is slowed down; `threshold == 0`: never."""

    threshold: int = 5
    base: float = 1.0
    max: float = 900.0

    def __post_init__(self) -> None:
        if self.threshold < 0:
            raise ValueError(f"--lockout-threshold must be 0 (off) or more, got {self.threshold}")
        if not self.base > 0 or self.max < self.base:
            raise ValueError(f"--lockout-base must be more than 0 and at most --lockout-max ({self.base}, {self.max})")

    @property
    def enabled(self) -> bool:
        return self.threshold > 0

    def backoff(self, failures: int) -> float:
        """Seconds a source with `failures` counted failures is locked out: 0 below the
        threshold, then base, 2 base, 4 base, ... up to max."""
        if not self.enabled or failures < self.threshold:
            return 0.0
        exponent = failures - self.threshold
        if exponent >= 63 or self.base * 2.0**exponent >= self.max:
            return self.max
        return self.base * 2.0**exponent

    def forget_at(self, last_failure: float, locked_until: float | None) -> float:
        """When a source's failure count is forgotten: after a quiet time of `max` past its
        last failure or the end of its lockout, whichever is later. An attacker who comes back
        the moment each lockout ends keeps doubling; someone who mistyped once is forgiven."""
        return max(last_failure, locked_until or 0.0) + self.max


@dataclass(frozen=True)
class Limits:
    """Everything the RA enforces beyond authorisation, in one value."""

    issue: Rate = Rate(10, 60.0)
    source: Rate = Rate(600, 60.0)
    lockout: LockoutPolicy = LockoutPolicy()

    @classmethod
    def off(cls) -> Limits:
        """No limit and no lockout: the in-process RA of `ztca`, which an operator runs."""
        return cls(Rate(0, 60.0), Rate(0, 60.0), LockoutPolicy(0))

    def to_dict(self) -> dict[str, float]:
        return {
            "issue_count": self.issue.count,
            "issue_period": self.issue.period,
            "source_count": self.source.count,
            "source_period": self.source.period,
            "lockout_threshold": self.lockout.threshold,
            "lockout_base": self.lockout.base,
            "lockout_max": self.lockout.max,
        }

    @classmethod
    def from_dict(cls, d: dict[str, float]) -> Limits:
        return cls(
            Rate(int(d["issue_count"]), float(d["issue_period"])),
            Rate(int(d["source_count"]), float(d["source_period"])),
            LockoutPolicy(int(d["lockout_threshold"]), float(d["lockout_base"]), float(d["lockout_max"])),
        )


def retry_after_header(seconds: float) -> int:
    """The `Retry-After` value: whole seconds, rounded up, at least 1 (RFC 9110 10.2.3 allows
    only an integer; rounding down would invite a retry that is refused again)."""
    return max(1, math.ceil(seconds - 1e-9))
