"""thisUpdate against the revocation dates a CRL lists (RFC 5280 5.1.2.4, 5.1.2.6): one case per rule."""

from __future__ import annotations

import datetime as dt

import pytest

from zt.ca.crl import RevokedEntry, effective_this_update

T = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
S = dt.timedelta(seconds=1)


@pytest.mark.parametrize(
    "this_update, revoked, expected",
    [
        (T - 30 * S, [], T - 30 * S),  # nothing listed: the backdate stays
        (T - 30 * S, [T - 60 * S], T - 30 * S),  # an older revocation: the backdate stays
        (T - 30 * S, [T - 30 * S], T - 30 * S),  # equal is fine: "not after"
        (T - 30 * S, [T - 60 * S, T], T),  # a revocation recorded just now wins over the backdate
        (T - 30 * S, [T, T - 10 * S], T),  # the latest one, wherever it is in the list
    ],
)
def test_effective_this_update_is_never_before_a_listed_revocation(
    this_update: dt.datetime, revoked: list[dt.datetime], expected: dt.datetime
) -> None:
    entries = [RevokedEntry(i + 1, at) for i, at in enumerate(revoked)]
    assert effective_this_update(this_update, entries) == expected
