"""The rate-limit and lockout rules, table-driven, on a real store file and a fake clock."""

from __future__ import annotations

import argparse
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_ca
from zt.ca.layout import CaPaths
from zt.clock import FakeClock
from zt.errors import ConfigError, RateLimited
from zt.ra import main as ra_main
from zt.ra.limits import BOOTSTRAP_TOKEN, Limits, LockoutPolicy, Rate, parse_rate, retry_after_header
from zt.ra.lockout import Lockout
from zt.ra.ratelimit import RateLimiter
from zt.ra.store import SCHEMA_VERSION, Store
from zt.ra.store_api import StateStore
from zt.ra.store_open import open_store


@pytest.mark.parametrize(
    "text, rate",
    [
        ("10/1m", Rate(10, 60)),
        ("600/1m", Rate(600, 60)),
        ("3/5s", Rate(3, 5)),
        ("100/m", Rate(100, 60)),
        ("5/1.5s", Rate(5, 1.5)),
        ("2/1h", Rate(2, 3600)),
        ("0", Rate(0, 60)),
        ("0/1m", Rate(0, 60)),
    ],
)
def test_parse_rate(text: str, rate: Rate) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["10", "ten/1m", "10/", "10/0s", "-1/1m", "10/1w", "/1m"])
def test_parse_rate_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_rate(text)


@pytest.mark.parametrize(
    "failures, seconds",
    [(0, 0), (4, 0), (5, 1), (6, 2), (7, 4), (10, 32), (14, 512), (15, 900), (1000, 900)],
)
def test_backoff_doubles_from_the_threshold_up_to_the_maximum(failures: int, seconds: float) -> None:
    assert LockoutPolicy(5, 1.0, 900.0).backoff(failures) == seconds


def test_lockout_off_never_backs_off() -> None:
    assert LockoutPolicy(0).backoff(1000) == 0


@pytest.mark.parametrize("seconds, header", [(0.0, 1), (0.2, 1), (1.0, 1), (1.001, 2), (59.5, 60)])
def test_retry_after_is_whole_seconds_rounded_up(seconds: float, header: int) -> None:
    assert retry_after_header(seconds) == header


def test_flags_env_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    args = ra_main.build_parser().parse_args([])
    assert ra_main.limits_of(args) == Limits()
    monkeypatch.setenv("ZT_RA_RATE_ISSUE", "3/5s")
    from zt import options

    args = options.parse(ra_main.build_parser(), ["--lockout-base", "2s", "--lockout-max", "1m"], "ZT_RA")
    limits = ra_main.limits_of(args)
    assert limits.issue == Rate(3, 5) and limits.lockout == LockoutPolicy(5, 2.0, 60.0)
    bad = options.parse(ra_main.build_parser(), ["--lockout-base", "2m", "--lockout-max", "1m"], "ZT_RA")
    with pytest.raises(ConfigError):
        ra_main.limits_of(bad)


def test_bad_rate_flag_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        ra_main.main(["--rate-issue", "lots"])
    assert e.value.code == 2
    assert "invalid rate 'lots'" in capsys.readouterr().err


def test_settings_carry_the_limits_to_workers() -> None:
    from zt.ra.settings import RaSettings

    s = RaSettings(ca_dir=Path("/x"), limits=Limits(Rate(3, 5), Rate(0, 60), LockoutPolicy(2, 0.5, 8)))
    assert RaSettings.from_json(s.to_json()) == s


# -- on a store -----------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(make_ca(tmp_path).paths.store)


def test_window_is_strict_and_slides(store: Store) -> None:
    clock = FakeClock()
    limiter = RateLimiter(store, Limits(source=Rate(3, 10)), clock)
    for _ in range(3):
        limiter.admit_source("s", "/v1/status")
        clock.advance(3)  # hits at 0, 3, 6
    with pytest.raises(RateLimited) as e:
        limiter.admit_source("s", "/v1/status")  # at 9: three within the last 10 s
    assert e.value.retry_after == pytest.approx(1.0)
    limiter.admit_source("other", "/v1/status")
    clock.advance(1.01)  # the hit at 0 left the window
    limiter.admit_source("s", "/v1/status")
    with pytest.raises(RateLimited):
        limiter.admit_source("s", "/v1/status")


@pytest.fixture
def any_store(tmp_path: Path, store_url: str | None) -> Iterator[StateStore]:
    """On each store backend (tests/conftest.py: store_url)."""
    ca = make_ca(tmp_path, *(["--store", store_url] if store_url else []))
    store = open_store(store_url, CaPaths(ca.dir))
    store.check()
    yield store
    store.close()


def test_window_over_its_limit_waits_for_the_limit_th_newest_hit(any_store: StateStore) -> None:
    """More hits than the limit (requests counted after their answer, or a lowered limit): one
    more fits once fewer than `limit` are left, when the `limit`-th newest leaves the window."""
    clock = FakeClock()
    limiter = RateLimiter(any_store, Limits(source=Rate(3, 10)), clock)
    start = clock.now().timestamp()
    with any_store.write() as c:
        for i in range(5):
            any_store.add_rate_hit(c, "source:s", start + i)
    clock.advance(5)
    assert limiter.source_retry("s") == pytest.approx(7.0)  # the hit at 2 leaves at 12
    with pytest.raises(RateLimited) as e:
        limiter.check_source("s", "/v1/issue")
    assert e.value.retry_after == pytest.approx(7.0)
    clock.advance(7.01)
    assert limiter.source_retry("s") is None
    limiter.admit_source("s", "/v1/status")  # hits at 3, 4 and now: full again
    assert limiter.source_retry("s") == pytest.approx(0.99)
    assert limiter.source_retry("other") is None


def test_one_audit_record_per_run_of_refusals(store: Store) -> None:
    clock = FakeClock()
    limiter = RateLimiter(store, Limits(source=Rate(1, 10)), clock)
    limiter.admit_source("s", "/v1/status")
    for _ in range(5):
        with pytest.raises(RateLimited):
            limiter.admit_source("s", "/v1/status")
    clock.advance(11)
    limiter.admit_source("s", "/v1/status")
    with pytest.raises(RateLimited):
        limiter.admit_source("s", "/v1/status")
    rows = [r for r in store.audit_rows() if r["action"] == "rate_limited"]
    assert len(rows) == 2


def test_lockout_forgets_after_a_quiet_time_and_on_success(store: Store) -> None:
    clock = FakeClock()
    lockout = Lockout(store, LockoutPolicy(2, 1.0, 10.0), clock)
    attempt = lockout.check("s", BOOTSTRAP_TOKEN)
    lockout.failed(attempt)
    with pytest.raises(RateLimited) as e:
        lockout.failed(lockout.check("s", BOOTSTRAP_TOKEN))
    assert e.value.code == "locked_out" and e.value.retry_after == 1.0
    with pytest.raises(RateLimited):
        lockout.check("s", BOOTSTRAP_TOKEN)
    clock.advance(1.0 + 10.0)  # lockout over, then a quiet `max`: forgotten
    lockout.failed(lockout.check("s", BOOTSTRAP_TOKEN))  # failure 1 again, no lockout
    attempt = lockout.check("s", BOOTSTRAP_TOKEN)
    assert attempt.had_failures
    lockout.succeeded(attempt)
    assert not lockout.check("s", BOOTSTRAP_TOKEN).had_failures


def test_purge_keeps_only_what_the_windows_need(store: Store) -> None:
    clock = FakeClock()
    limiter = RateLimiter(store, Limits(issue=Rate(5, 60), source=Rate(5, 10)), clock)
    limiter.admit_source("old", "/v1/status")
    clock.advance(61)
    limiter.admit_source("new", "/v1/status")
    limiter.purge()
    keys = [r[0] for r in store.read().execute("SELECT key FROM rate_hits")]
    assert keys == ["source:new"]


def test_schema_2_store_is_upgraded_to_3(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    conn = sqlite3.connect(ca.paths.store)
    conn.executescript(
        "DROP TABLE rate_hits; DROP TABLE rate_refusals; DROP TABLE token_failures;"
        "UPDATE meta SET value='2' WHERE key='schema_version';"
    )
    conn.close()
    store = Store(ca.paths.store)
    store.check()
    assert store.meta("schema_version") == str(SCHEMA_VERSION) == "3"
    RateLimiter(store, Limits(), FakeClock()).admit_source("s", "/v1/status")
