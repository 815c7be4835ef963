"""Group commit (zt.ra.group_commit): many issuances in one transaction, each with its own outcome."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import make_ca
from zt.agent.material import build_csr, csr_pem
from zt.auditlog import verify_file
from zt.ca.authority import Authority
from zt.ca.layout import CaPaths
from zt.clock import SystemClock
from zt.errors import Unauthorized
from zt.pki.keys import generate_key
from zt.ra.group_commit import GroupCommit
from zt.ra.service import RegistrationAuthority
from zt.ra.store_api import Conn, StateStore
from zt.ra.store_open import open_store


@pytest.fixture
def ra(tmp_path: Path, store_url: str | None) -> Iterator[RegistrationAuthority]:
    """On each store backend (tests/conftest.py: store_url): group commit's savepoints and its
    one audit append per batch must behave the same on SQLite and on PostgreSQL."""
    ca = make_ca(tmp_path, *(["--store", store_url] if store_url else []))
    paths = CaPaths(ca.dir)
    store = open_store(store_url, paths)
    store.check()
    try:
        yield RegistrationAuthority(
            store, Authority.load(paths, "zt.lab"), paths, SystemClock(), committer=GroupCommit(store)
        )
    finally:
        store.close()


def _jobs(ra: RegistrationAuthority, n: int) -> list[tuple[str, str]]:
    out = []
    for i in range(n):
        reg = ra.register(f"g{i}", dt.timedelta(hours=1))
        out.append((reg.token, csr_pem(build_csr(generate_key(), reg.identity.spiffe_id))))
    return out


def test_group_commit_concurrent_issuances_share_transactions_and_all_record(ra: RegistrationAuthority) -> None:
    jobs = _jobs(ra, 40)
    with ThreadPoolExecutor(16) as pool:
        issued = list(pool.map(lambda j: ra.issue(*j), jobs))
    assert ra.committer is not None
    assert ra.committer.requests == 40
    assert ra.committer.batches < 40  # some shared a transaction (16 threads waiting at once)
    serials = {i.record.serial for i in issued}
    assert len(serials) == 40
    assert {c.serial for c in ra.store.certificates()} >= serials
    # Every issuance's audit line reached the file, in one unbroken chain.
    verdict = verify_file(ra.store.audit_log.path, StateStore.audit_records(ra.store.read()))
    assert verdict.ok, verdict.problem
    assert sum(1 for r in StateStore.audit_records(ra.store.read()) if r.action == "issue") == 40


def test_group_commit_failing_request_rolls_back_only_its_own_writes(ra: RegistrationAuthority) -> None:
    committer = GroupCommit(ra.store)
    gate, started = threading.Event(), threading.Event()

    def block(conn: Conn) -> None:
        started.set()
        gate.wait(5)  # hold the writer so the next three queue into one batch

    def good(name: str):
        return lambda c: StateStore.set_meta(c, name, "kept")

    def bad(conn: Conn) -> None:
        StateStore.set_meta(conn, "bad", "must not stay")
        StateStore.audit(conn, 0.0, "test", "bad", None, "ok")
        raise Unauthorized("refused", code="used_token")

    first = committer.submit(block)
    assert started.wait(5)
    futures = [committer.submit(good("one")), committer.submit(bad), committer.submit(good("two"))]
    gate.set()
    first.result(5)
    assert futures[0].result(5) is None
    with pytest.raises(Unauthorized):
        futures[1].result(5)
    assert futures[2].result(5) is None
    assert committer.batches == 2  # the blocker alone, then the three together
    committer.close()
    assert ra.store.meta("one") == "kept" and ra.store.meta("two") == "kept"
    assert ra.store.meta("bad") is None
    assert not [r for r in StateStore.audit_records(ra.store.read()) if r.action == "bad"]


def test_group_commit_spent_token_refused_once_even_in_one_batch(ra: RegistrationAuthority) -> None:
    """The same token twice in one batch (two keys): the second is authorised again inside the
    transaction, after the first spent it, and refused."""
    token = ra.register("twice", dt.timedelta(hours=1)).token
    csrs = [csr_pem(build_csr(generate_key(), "spiffe://zt.lab/svc/twice")) for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda c: _outcome(ra, token, c), csrs))
    assert sorted(outcomes) == ["ok", "used_token"]


def _outcome(ra: RegistrationAuthority, token: str, csr: str) -> str:
    try:
        ra.issue(token, csr)
    except Unauthorized as e:
        return e.code
    return "ok"


def test_group_commit_async_issue_waits_without_blocking_the_loop(ra: RegistrationAuthority) -> None:
    jobs = _jobs(ra, 10)

    async def main() -> list[str]:
        done = await asyncio.gather(*(ra.issue_async(t, c) for t, c in jobs))
        return [i.record.serial for i in done]

    assert len(set(asyncio.run(main()))) == 10
