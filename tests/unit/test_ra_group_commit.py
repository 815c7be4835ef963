"""Group commit (zt.ra.group_commit): many issuances in one transaction, each with its own outcome."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import threading
import time
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


def test_group_commit_one_client_never_waits_for_the_linger(ra: RegistrationAuthority) -> None:
    """Requests one after another, each sent when the one before was answered (one client):
    nothing else is under way or unanswered, so each commits at once, however long the linger
    and however quickly they follow each other."""
    committer = GroupCommit(ra.store, linger=60.0)
    for i in range(5):
        committer.submit(functools.partial(_set_meta, name=f"one{i}")).result(20)  # not 60 s
    committer.close()
    assert (committer.batches, committer.requests) == (5, 5)


def test_group_commit_requests_from_several_clients_close_together_share_one_batch(
    ra: RegistrationAuthority,
) -> None:
    """A first request holds the writer; a second comes while it is unanswered, so its batch
    lingers (1 s here) and three more sent 20 ms apart join it: two batches. Without the linger
    each of the last three would commit alone (a commit takes far less than 20 ms)."""
    committer = GroupCommit(ra.store, linger=1.0)
    gate, started = threading.Event(), threading.Event()

    def block(conn: Conn) -> None:
        started.set()
        gate.wait(5)

    futures = [committer.submit(block)]
    assert started.wait(5)
    futures.append(committer.submit(functools.partial(_set_meta, name="q0")))
    gate.set()
    for i in range(1, 4):
        time.sleep(0.02)
        futures.append(committer.submit(functools.partial(_set_meta, name=f"q{i}")))
    for f in futures:
        f.result(20)
    committer.close()
    assert (committer.batches, committer.requests) == (2, 5)


def _set_meta(conn: Conn, name: str) -> None:
    StateStore.set_meta(conn, name, "1")


def _under_way(committer: GroupCommit, name: str, gate: asyncio.Event, submit: bool) -> asyncio.Task[None]:
    """A request the loop has started (`expect`) that submits, or is refused, once `gate` opens."""

    async def request() -> None:
        with committer.expect():
            await gate.wait()
            if not submit:
                raise Unauthorized("refused before it was recorded", code="unknown_token")
            await committer.run_async(lambda c: StateStore.set_meta(c, name, "1"))

    return asyncio.ensure_future(request())


@pytest.mark.parametrize("second_submits", [True, False], ids=["submits", "refused"])
def test_group_commit_waits_for_a_request_under_way_and_no_longer(
    ra: RegistrationAuthority, second_submits: bool
) -> None:
    """A batch waits while another request is under way on the loop, and commits as soon as
    that request submits (one batch of two) or is refused (a batch of one): not when the
    linger (60 s here) runs out."""
    committer = GroupCommit(ra.store, linger=60.0)

    async def main() -> None:
        opened, held = asyncio.Event(), asyncio.Event()
        opened.set()
        first = _under_way(committer, "first", opened, submit=True)
        second = _under_way(committer, "second", held, submit=second_submits)
        await asyncio.sleep(0.5)
        assert not first.done(), "the batch did not wait for the request under way"
        held.set()
        done, _ = await asyncio.wait([first, second], timeout=20)
        assert first in done and second in done, "the batch waited for the linger, not the request"
        assert first.exception() is None
        assert (second.exception() is None) == second_submits

    asyncio.run(main())
    committer.close()
    assert (committer.batches, committer.requests) == ((1, 2) if second_submits else (1, 1))
    assert ra.store.meta("first") == "1"
