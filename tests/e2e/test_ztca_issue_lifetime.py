"""`ztca issue` holds to the running RA's maximum leaf lifetime (issue 8)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tests.conftest import CaDir, start_ra


def _not_after(doc: dict) -> dt.datetime:  # type: ignore[type-arg]
    return dt.datetime.fromisoformat(str(doc["not_after"]).replace("Z", "+00:00"))


def test_ztca_issue_follows_the_ras_leaf_ttl(ca: CaDir, tmp_path: Path) -> None:
    ca.register("svc")
    # Before any RA ran, the maximum is the RA's default (1h).
    r = ca.ztca("issue", "svc", "--out", str(tmp_path / "a"), "--ttl", "2h")
    assert r.code == 2 and "maximum leaf lifetime (3600s" in r.err
    ra = start_ra(ca, tmp_path / "logs", "--leaf-ttl", "2h")
    try:
        r = ca.ztca("issue", "svc", "--out", str(tmp_path / "b"), "--ttl", "2h", "--json")
        assert r.code == 0, r.err
        assert _not_after(r.json()) - dt.datetime.now(dt.UTC) > dt.timedelta(minutes=110)
        r = ca.ztca("issue", "svc", "--out", str(tmp_path / "c"), "--ttl", "3h")
        assert r.code == 2 and "maximum leaf lifetime (7200s" in r.err and "--allow-long-ttl" in r.err
        r = ca.ztca("issue", "svc", "--out", str(tmp_path / "d"), "--ttl", "3h", "--allow-long-ttl", "--json")
        assert r.code == 0, r.err
        assert _not_after(r.json()) - dt.datetime.now(dt.UTC) > dt.timedelta(minutes=170)
    finally:
        ra.proc.stop()
