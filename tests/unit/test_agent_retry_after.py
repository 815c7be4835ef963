"""Reading an RA's Retry-After (RFC 9110 section 10.2.3): both forms, a cap, and garbage ignored."""

from __future__ import annotations

import datetime as dt

import pytest

from zt.agent.ra_client import RETRY_AFTER_MAX, retry_after_seconds

NOW = dt.datetime(2026, 12, 1, 8, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("27", 27.0),
        (" 0 ", 0.0),
        ("Tue, 01 Dec 2026 08:00:30 GMT", 30.0),
        ("Tue, 01 Dec 2026 07:59:00 GMT", 0.0),  # a date in the past: now
        ("99999999", RETRY_AFTER_MAX),  # a hostile or broken RA cannot park the agent for years
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
    ],
)
def test_retry_after_header_forms(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header, NOW) == seconds
