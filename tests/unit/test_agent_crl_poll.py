"""When the agent asks for the CRL again, and how it notices a new token: pure decisions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zt.agent.crl_fetch import next_fetch_delay
from zt.agent.token_watch import TokenWatch

INTERVAL = 60.0


@pytest.mark.parametrize(
    "result, asked_wait, elapsed, expected",
    [
        ("updated", 30, 0.01, 0.0),  # a new CRL: ask again at once (the next one is held)
        ("updated", 0, 0.01, 0.0),
        ("not_modified", 30, 30.02, 0.0),  # a held 304: the publisher paces us
        ("not_modified", 30, 15.0, 0.0),  # held at least half the wait asked for
        ("not_modified", 30, 0.003, INTERVAL),  # answered at once: a publisher without long-poll
        ("not_modified", 30, 14.9, INTERVAL),
        ("not_modified", 0, 0.003, INTERVAL),  # no wait was asked (first request, or --crl-wait 0)
        ("error", 30, 30.0, INTERVAL),  # never retried at once, however long it took
        ("error", 0, 0.0, INTERVAL),
        ("rejected", 30, 0.01, INTERVAL),
    ],
)
def test_next_fetch_delay(result: str, asked_wait: float, elapsed: float, expected: float) -> None:
    assert next_fetch_delay(result, asked_wait, elapsed, INTERVAL) == expected


def test_no_answer_pattern_makes_the_poll_spin() -> None:
    """Whatever a publisher answers, a request that took less than a second is never followed
    at once by another unless it brought a new CRL (and CRL numbers only go up)."""
    for result in ("not_modified", "error", "rejected"):
        for asked in (0, 1, 30, 60):
            assert next_fetch_delay(result, asked, 0.4, INTERVAL) == INTERVAL


def write(path: Path, text: str) -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a visible change on coarse clocks


def test_token_watch_offers_only_new_tokens(tmp_path: Path) -> None:
    f = tmp_path / "token"
    watch = TokenWatch(f)
    assert watch.fresh_token() is None  # no file yet
    write(f, "ztb_first\n")
    assert watch.fresh_token() == "ztb_first"
    watch.mark_used("ztb_first")
    assert watch.fresh_token() is None  # unchanged file: one stat, nothing read
    write(f, "ztb_first\n")  # rewritten with the same (spent) token
    assert watch.fresh_token() is None
    write(f, "")  # an operator half-way through writing it
    assert watch.fresh_token() is None
    write(f, "ztb_second\n")
    assert watch.fresh_token() == "ztb_second"


def test_token_watch_offers_a_token_again_after_a_transient_failure(tmp_path: Path) -> None:
    f = tmp_path / "token"
    write(f, "ztb_x")
    watch = TokenWatch(f)
    assert watch.fresh_token() == "ztb_x"
    assert watch.fresh_token() is None  # not changed since
    watch.retry_later()
    assert watch.fresh_token() == "ztb_x"
