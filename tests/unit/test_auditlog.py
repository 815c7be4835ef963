"""The audit log's chain, verification and repair, on real files and a real store.

Each tamper case changes a log the store wrote and expects `verify` to name the first bad line
and the kind of change; the untampered twin verifies.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from zt.auditlog import GENESIS, AuditRecord, entry_hash, torn_path, verify_bytes, verify_file
from zt.errors import StoreError
from zt.ra.store import Store


def make_store(tmp_path: Path, rows: int = 6) -> Store:
    store = Store(tmp_path / "zt.db", durable=False)
    store.create({"trust_domain": "zt.lab"})
    for i in range(rows):
        with store.write() as c:
            Store.audit(c, 1_700_000_000.0 + i, "ztca", "register", f"spiffe://zt.lab/svc/s{i}", "ok", f"n{i}")
    return store


def lines_of(store: Store) -> list[bytes]:
    return store.audit_log.path.read_bytes().splitlines(keepends=True)


def rows(store: Store) -> list[AuditRecord]:
    return Store.audit_records(store.read())


def test_audit_log_every_committed_row_is_a_chained_line(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    docs = [json.loads(line) for line in lines_of(store)]
    assert [d["seq"] for d in docs] == [1, 2, 3, 4, 5, 6]
    assert [d["rid"] for d in docs] == [r.rid for r in rows(store)]
    assert docs[0]["prev"] == GENESIS
    for before, after in itertools.pairwise(docs):
        assert after["prev"] == before["hash"] == entry_hash(before)
    assert store.audit_log.path.stat().st_mode & 0o777 == 0o600
    verdict = verify_file(store.audit_log.path, rows(store))
    assert verdict.ok and verdict.lines == 6


def test_audit_log_rolled_back_transaction_leaves_no_line(tmp_path: Path) -> None:
    store = make_store(tmp_path, rows=1)
    with pytest.raises(RuntimeError), store.write() as c:
        Store.audit(c, 1.0, "admin", "revoke", "ab", "ok")
        raise RuntimeError("the effect failed")
    assert len(lines_of(store)) == 1
    assert len(rows(store)) == 1
    assert verify_file(store.audit_log.path, rows(store)).ok


def _edit(lines: list[bytes]) -> list[bytes]:
    lines[2] = lines[2].replace(b"s2", b"s9")
    return lines


def _rehash(lines: list[bytes]) -> list[bytes]:
    """Edit line 3 and recompute its own hash: the store's row 3 gives it away (and, to the chain
    alone, line 4's prev: see test_audit_verify_chain_alone_names_the_line_after_a_rehash)."""
    doc = json.loads(lines[2])
    doc["actor"] = "someone-else"
    doc["hash"] = entry_hash(doc)
    lines[2] = json.dumps(doc).encode() + b"\n"
    return lines


def _swap(lines: list[bytes]) -> list[bytes]:
    lines[2], lines[3] = lines[3], lines[2]
    return lines


TAMPERS: list[tuple[str, Callable[[list[bytes]], list[bytes]], int, str]] = [
    ("edit a field", _edit, 3, "edited"),
    ("edit and re-hash", _rehash, 3, "edited"),
    ("delete a line", lambda ls: ls[:2] + ls[3:], 3, "removed"),
    ("delete two lines", lambda ls: ls[:1] + ls[3:], 2, "removed"),
    ("swap two lines", _swap, 3, "reordered"),
    ("duplicate a line", lambda ls: ls[:4] + ls[3:], 5, "reordered"),
    ("truncate mid-line", lambda ls: [*ls[:4], ls[4][:40]], 5, "torn"),
    ("drop the last lines", lambda ls: ls[:4], 5, "truncated"),
    ("garbage line", lambda ls: [*ls[:2], b"not json\n", *ls[2:]], 3, "malformed"),
]


@pytest.mark.parametrize(("how", "tamper", "line", "kind"), TAMPERS, ids=[t[0] for t in TAMPERS])
def test_audit_verify_names_the_first_tampered_line(
    tmp_path: Path, how: str, tamper: Callable[[list[bytes]], list[bytes]], line: int, kind: str
) -> None:
    store = make_store(tmp_path)
    path = store.audit_log.path
    path.write_bytes(b"".join(tamper(lines_of(store))))
    verdict = verify_file(path, rows(store))
    assert verdict.problem is not None, how
    assert (verdict.problem.line, verdict.problem.kind) == (line, kind), verdict.problem.message
    assert f"line {line}" in verdict.problem.message or kind == "truncated"


def test_audit_verify_chain_alone_names_the_line_after_a_rehash(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    problem = verify_bytes(b"".join(_rehash(lines_of(store)))).problem
    assert problem is not None and (problem.line, problem.kind) == (4, "edited")
    assert "line 3 was rewritten" in problem.message


def test_audit_verify_chain_alone_cannot_see_a_cut_tail_but_the_store_can(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    data = b"".join(lines_of(store)[:4])
    assert verify_bytes(data).ok  # the chain alone: four good lines
    assert verify_bytes(data, rows(store)).problem is not None


def test_audit_verify_sees_a_rewritten_chain_against_the_store(tmp_path: Path) -> None:
    """An attacker who rewrites every hash from line 2 on keeps the chain valid; the rows do not match."""
    store = make_store(tmp_path)
    docs = [json.loads(line) for line in lines_of(store)]
    docs[1]["detail"] = "forged"
    for i in range(1, len(docs)):
        docs[i]["prev"] = docs[i - 1]["hash"]
        docs[i]["hash"] = entry_hash(docs[i])
    data = b"".join(json.dumps(d).encode() + b"\n" for d in docs)
    assert verify_bytes(data).ok
    problem = verify_bytes(data, rows(store)).problem
    assert problem is not None and (problem.line, problem.kind) == (2, "edited")
    assert "detail" in problem.message


def test_audit_torn_tail_is_set_aside_and_its_row_appended_whole_by_the_next_writer(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    path = store.audit_log.path
    whole = lines_of(store)
    path.write_bytes(b"".join(whole[:5]) + whole[5][:50])
    assert verify_file(path, rows(store)).problem.kind == "torn"  # type: ignore[union-attr]
    with store.write() as c:
        Store.audit(c, 1_700_000_100.0, "admin", "revoke", "ab", "ok", None)
    after = lines_of(store)
    assert after[:6] == whole  # the torn row is back, byte for byte, then the new one
    assert len(after) == 7
    side = [json.loads(line) for line in torn_path(path).read_text().splitlines()]
    assert side[0]["offset"] == len(b"".join(whole[:5]))
    assert whole[5].decode().startswith(side[0]["fragment"])
    assert torn_path(path).stat().st_mode & 0o777 == 0o600
    assert verify_file(path, rows(store)).ok


def test_audit_rows_a_dead_writer_left_are_appended_by_sync(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    path = store.audit_log.path
    path.write_bytes(b"".join(lines_of(store)[:2]))  # as if two writers died after COMMIT
    result = store.sync_audit()
    assert len(result.appended) == 4
    assert verify_file(path, rows(store)).ok


def test_audit_log_of_another_store_refuses_appends(tmp_path: Path) -> None:
    store = make_store(tmp_path, rows=3)
    path = store.audit_log.path
    old = path.read_bytes()
    os.unlink(tmp_path / "zt.db")
    fresh = make_store(tmp_path, rows=0)
    path.write_bytes(old)  # rids 1..3 already in the file; the new store's first row is rid 1
    with pytest.raises(StoreError, match="ahead of the store"), fresh.write() as c:
        Store.audit(c, 1.0, "ztca", "init", "zt.lab", "ok")


def test_audit_echo_copies_each_appended_line(tmp_path: Path) -> None:
    echoed = tmp_path / "echo.txt"
    with echoed.open("w") as out:
        store = Store(tmp_path / "zt.db", durable=False, audit_echo=out)
        store.create({"trust_domain": "zt.lab"})
        with store.write() as c:
            Store.audit(c, 1.0, "ztca", "init", "zt.lab", "ok")
            Store.audit(c, 2.0, "ztca", "register", "spiffe://zt.lab/svc/a", "ok")
    assert echoed.read_bytes() == store.audit_log.path.read_bytes()


def test_audit_log_unreadable_head_refuses_to_append(tmp_path: Path) -> None:
    store = make_store(tmp_path, rows=2)
    with store.audit_log.path.open("ab") as f:
        f.write(b"garbage\n")
    with pytest.raises(StoreError, match="not an entry"), store.write() as c:
        Store.audit(c, 1.0, "ztca", "x", None, "ok")


def test_audit_log_head_kept_in_memory_still_sees_other_writers_and_rewrites(tmp_path: Path) -> None:
    """The head this process wrote last is reused only while the file ends exactly as it left
    it: another writer's lines (another process: its own handle and flock), and a last line
    rewritten to the same length, are both seen."""
    store = make_store(tmp_path, rows=2)
    other = Store(tmp_path / "zt.db", durable=False)
    for i, writer in enumerate((store, other, store, other, store)):
        with writer.write() as c:
            Store.audit(c, 1_700_000_010.0 + i, "ztca", "revoke", f"s{i}", "ok", None)
    assert verify_file(store.audit_log.path, rows(store)).ok
    assert len(lines_of(store)) == 7
    path = store.audit_log.path
    data = path.read_bytes()
    path.write_bytes(data[:-2] + b"]\n")  # same size, last line no longer an entry
    with pytest.raises(StoreError, match="not an entry"), store.write() as c:
        Store.audit(c, 1_700_000_020.0, "ztca", "revoke", "x", "ok", None)


def test_audit_append_overlaps_the_next_commit_and_keeps_commit_order(tmp_path: Path) -> None:
    """A committed transaction appends its lines after releasing the write lock: the next
    writer commits meanwhile, then waits for the audit lock; the first append writes both
    rows in commit order, and the second writer finds its line there."""
    store = make_store(tmp_path, rows=1)
    other = Store(tmp_path / "zt.db", durable=False)
    _, pending = store.write_deferred(lambda c: Store.audit(c, 1_700_000_010.0, "ztca", "revoke", "a", "ok", None))
    assert pending is not None
    errors: list[BaseException] = []

    def second() -> None:
        try:
            with other.write() as c:
                Store.audit(c, 1_700_000_011.0, "ztca", "revoke", "b", "ok", None)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    t = threading.Thread(target=second)
    t.start()
    deadline = time.monotonic() + 10
    while len(rows(store)) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(rows(store)) == 3  # the second writer committed while the first held the audit lock
    time.sleep(0.05)
    assert t.is_alive() and len(lines_of(store)) == 1  # and it waits for the first append
    result = pending.finish()
    assert [json.loads(line)["subject"] for line in result.appended] == ["a", "b"]
    t.join(10)
    assert not t.is_alive() and errors == []
    assert verify_file(store.audit_log.path, rows(store)).ok
    assert len(lines_of(store)) == 3
