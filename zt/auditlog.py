"""The tamper-evident audit log: an append-only, hash-chained JSON Lines file.

Every line is one JSON object (keys in this order, docs/audit.md):

    {"seq": 7, "ts": "2026-12-01T01:35:32.123Z", "actor": "ztca", "action": "revoke",
     "subject": "1f3a...", "outcome": "ok", "detail": "key-compromise", "rid": 7,
     "prev": "<64 hex: the previous line's hash>", "hash": "<64 hex>"}

`hash` is SHA-256 over the line's canonical form without `hash`: the object serialised with
sorted keys, no whitespace, UTF-8 (`canonical`). `prev` is the previous line's `hash`, and
64 zeros for the first line. `seq` counts lines from 1; `rid` is the store's audit row the
line was made from. So an edited line no longer matches its own hash, a removed line leaves
a gap in `seq` and a `prev` that does not match, and swapped lines run `seq` backwards;
`verify` names the first line where any of that happens.

Why the store feeds the file (the "outbox"): callers record an audit row in the same SQLite
transaction as the effect it describes (zt.ra.store.Store.audit), so the row exists exactly
when the effect committed. After the commit, still under the store's write lock, the writer
appends every row the file does not hold yet (`AuditLog.sync`). A crash between the commit
and the append loses nothing: the next writer, the RA at start or `ztca audit repair` appends
the row. A rolled-back transaction has no row, so it never gets a line.

Concurrency: RA workers and `ztca` serialise on an flock(2) on the file itself; the chain
head (the last line's seq, rid and hash) is known under that lock only, so two processes can
never append with the same `prev`. A process remembers the head it wrote last together with
the file's size and the bytes of that last line (with the newline before it): under the lock
it checks both (one fstat, one pread of a few hundred bytes) and reads the tail only when they
differ. Equal size and equal last line is exactly what reading the tail would find, so another
writer's append, a repair or a rewrite is always seen; only the 64 KiB read and the parse of a
tail this process wrote itself are saved.

A torn last line (a writer killed between writing a line and its newline, or power lost
mid-append) is detected, reported by `verify`, and repaired by the next writer or by
`ztca audit repair`: the fragment is moved to `audit.jsonl.torn` (kept as evidence, logged
as `audit_torn_tail`), the file is cut back to its last whole line, and the rows after it are
appended again from the store (the torn one among them, whole).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from zt.errors import StoreError
from zt.logjson import log_event

log = logging.getLogger("zt.audit")

GENESIS = "0" * 64
FIELDS = ("seq", "ts", "actor", "action", "subject", "outcome", "detail", "rid", "prev", "hash")
TORN_SUFFIX = ".torn"
# A test-only fault point (as FoundationDB's and TiKV's failpoints): "N" or "N@K". At this
# process's K-th append (default: the first) the writer writes only the first N bytes, fsyncs
# and kills itself with SIGKILL, holding the locks: exactly the torn write a crash mid-append
# leaves. Never set it outside tests.
FAILPOINT_ENV = "ZT_AUDIT_FAILPOINT_TEAR_AFTER_BYTES"
_appends = 0
_TAIL_CHUNK = 64 * 1024


class AuditLogError(StoreError):
    """The audit log cannot be appended to (unreadable, or its last whole line is not an entry)."""


@dataclass(frozen=True)
class AuditRecord:
    """One audit row as the store holds it: what happened, to what, by whom, with what result."""

    rid: int
    ts: float
    actor: str
    action: str
    subject: str | None
    outcome: str
    detail: str | None


@dataclass(frozen=True)
class Head:
    """The chain's end: the last whole line's seq, rid and hash (seq 0 for an empty file)."""

    seq: int = 0
    rid: int = 0
    hash: str = GENESIS


@dataclass(frozen=True)
class TornTail:
    """Bytes after the last newline: a line a writer began and never finished."""

    offset: int  # where the fragment starts (the file's length up to the last whole line)
    data: bytes


@dataclass(frozen=True)
class SyncResult:
    appended: tuple[str, ...]  # the lines written (without newlines)
    repaired: TornTail | None = None
    head: Head = Head()  # the chain's end after this sync


@dataclass(frozen=True)
class _KnownTail:
    """The end of the file as this process left it: its size, where `data` (the last line
    and its newline, with the newline before it unless the line starts the file) begins."""

    size: int
    offset: int
    data: bytes
    head: Head


@dataclass(frozen=True)
class Problem:
    """The first thing wrong with the file: a 1-based line number, a kind, and the explanation."""

    line: int
    kind: str  # edited | removed | reordered | torn | truncated | malformed
    message: str


@dataclass(frozen=True)
class Verdict:
    lines: int  # whole lines that verified
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def utc_ms(ts: float) -> str:
    """The log schema's time format: RFC 3339 UTC with milliseconds."""
    t = dt.datetime.fromtimestamp(ts, dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def canonical(entry: dict[str, Any]) -> bytes:
    """What is hashed: the entry without `hash`, sorted keys, no whitespace, UTF-8."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(entry)).hexdigest()


def make_entry(record: AuditRecord, head: Head) -> dict[str, Any]:
    """The line that follows `head` for `record`, with its hash."""
    entry: dict[str, Any] = {
        "seq": head.seq + 1,
        "ts": utc_ms(record.ts),
        "actor": record.actor,
        "action": record.action,
        "subject": record.subject,
        "outcome": record.outcome,
        "detail": record.detail,
        "rid": record.rid,
        "prev": head.hash,
    }
    entry["hash"] = entry_hash(entry)
    return entry


def render(entry: dict[str, Any]) -> str:
    return json.dumps(entry, separators=(",", ":"), ensure_ascii=False)


def torn_path(path: Path) -> Path:
    return path.with_name(path.name + TORN_SUFFIX)


def _entry_problem(doc: object) -> str | None:
    """Why a parsed line is not an audit entry, or None."""
    if not isinstance(doc, dict):
        return "not a JSON object"
    if set(doc) != set(FIELDS):
        return f"keys {sorted(doc)} are not the entry's {sorted(FIELDS)}"
    for k in ("seq", "rid"):
        if type(doc[k]) is not int or doc[k] < 1:
            return f"{k} is not a positive integer"
    for k in ("ts", "actor", "action", "outcome", "prev", "hash"):
        if not isinstance(doc[k], str):
            return f"{k} is not a string"
    for k in ("subject", "detail"):
        if doc[k] is not None and not isinstance(doc[k], str):
            return f"{k} is not a string or null"
    return None


def parse_line(raw: bytes) -> dict[str, Any] | str:
    """The entry on one line, or why it is not one."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        return f"not valid JSON ({e})"
    problem = _entry_problem(doc)
    if problem is not None:
        return problem
    assert isinstance(doc, dict)
    return doc


def read_tail(fd: int) -> tuple[Head, TornTail | None]:
    """The chain head and a torn tail, read backwards from the end of the open file."""
    size = os.fstat(fd).st_size
    if size == 0:
        return Head(), None
    data = b""
    pos = size
    # Read back until we hold the whole last line: its newline and the one before it (or the start).
    while pos > 0:
        step = min(_TAIL_CHUNK, pos)
        pos -= step
        data = os.pread(fd, step, pos) + data
        end = data.rfind(b"\n")
        if end >= 0 and data.rfind(b"\n", 0, end) >= 0:
            break
    torn: TornTail | None = None
    if not data.endswith(b"\n"):
        cut = data.rfind(b"\n")
        fragment = data[cut + 1 :]
        torn = TornTail(size - len(fragment), fragment)
        data = data[: cut + 1]
    lines = data.rstrip(b"\n").split(b"\n") if data.strip(b"\n") else []
    if not lines:
        return Head(), torn
    last = parse_line(lines[-1])
    if isinstance(last, str):
        raise AuditLogError(f"the last whole line of the audit log is not an entry ({last}); run 'ztca audit verify'")
    return Head(last["seq"], last["rid"], last["hash"]), torn


class AuditLog:
    """The file, appended to under its lock; one instance per process (threads share it)."""

    def __init__(self, path: Path, *, echo: IO[str] | None = None, fsync: bool = True) -> None:
        self.path = Path(path)
        self._echo = echo
        self._fsync = fsync
        self._mutex = threading.Lock()
        self._fd: int | None = None
        self._known: _KnownTail | None = None  # only read or written under the lock

    def _open(self) -> int:
        if self._fd is None:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as e:
                raise AuditLogError(f"cannot open audit log {self.path}: {e.strerror}") from e
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, 0o600)
            self._fd = fd
        return self._fd

    def close(self) -> None:
        with self._mutex:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._known = None

    def hold(self) -> AuditHold:
        """Take the lock (this process's mutex, then an exclusive flock: flock is per fd) and
        keep it until `AuditHold.release`, which any thread may call. The store takes it before
        it releases its write lock, so appends keep commit order (zt.ra.store_api.PendingAppend)."""
        self._mutex.acquire()
        try:
            fd = self._open()
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as e:
            self._mutex.release()
            raise AuditLogError(f"cannot lock audit log {self.path}: {e.strerror}") from e
        except BaseException:
            self._mutex.release()
            raise
        return AuditHold(self, fd)

    @contextlib.contextmanager
    def locked(self) -> Iterator[int]:
        """The open file under an exclusive flock (and this process's mutex: flock is per fd)."""
        held = self.hold()
        try:
            yield held.fd
        finally:
            held.release()

    def sync(self, rows_after: Callable[[int], Sequence[AuditRecord]]) -> SyncResult:
        """Append every record after the file's last rid, fsync, and return what was written.

        `rows_after(rid)` returns the store's committed rows with a larger rid, in rid order.
        """
        held = self.hold()
        try:
            return held.sync(rows_after)
        finally:
            held.release()

    def _head(self, fd: int) -> tuple[Head, TornTail | None]:
        """The chain head and a torn tail: from what this process wrote last if the file still
        ends exactly so, else read from the file."""
        known = self._known
        if (
            known is not None
            and os.fstat(fd).st_size == known.size
            and os.pread(fd, len(known.data), known.offset) == known.data
        ):
            return known.head, None
        self._known = None
        return read_tail(fd)

    def _sync_locked(self, fd: int, rows_after: Callable[[int], Sequence[AuditRecord]]) -> SyncResult:
        try:
            head, torn = self._head(fd)
            lines: list[str] = []
            for record in rows_after(head.rid):
                entry = make_entry(record, head)
                head = Head(entry["seq"], record.rid, entry["hash"])
                lines.append(render(entry))
            if torn is not None:
                self._set_aside(fd, torn)
                # Said before this append, not after: a writer killed in the middle of it
                # would otherwise leave the repair in <file>.torn with no log line.
                first = lines[0].encode() if lines else b""
                log_event(
                    log,
                    "audit_torn_tail",
                    logging.ERROR,
                    path=str(self.path),
                    offset=torn.offset,
                    bytes=len(torn.data),
                    set_aside=str(torn_path(self.path)),
                    restored_whole=bool(first) and first.startswith(torn.data),
                )
            if lines:
                self._known = None  # until the append is whole and fsync'd
                self._write(fd, ("\n".join(lines) + "\n").encode("utf-8"))
                last = lines[-1].encode("utf-8") + b"\n"
                size = os.fstat(fd).st_size
                tail = b"\n" + last if size > len(last) else last
                self._known = _KnownTail(size, size - len(tail), tail, head)
        except OSError as e:
            self._known = None
            raise AuditLogError(f"cannot append to audit log {self.path}: {e.strerror}") from e
        if self._echo is not None and lines:
            with contextlib.suppress(OSError, ValueError):
                self._echo.write("".join(line + "\n" for line in lines))
                self._echo.flush()
        return SyncResult(tuple(lines), torn, head)

    def _set_aside(self, fd: int, torn: TornTail) -> None:
        """Keep the fragment as evidence in `<file>.torn`, then cut the file back to whole lines."""
        note = {
            "ts": utc_ms(dt.datetime.now(dt.UTC).timestamp()),
            "offset": torn.offset,
            "fragment": torn.data.decode("utf-8", errors="backslashreplace"),
        }
        side = os.open(torn_path(self.path), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(side, (json.dumps(note) + "\n").encode())
            os.fsync(side)
        finally:
            os.close(side)
        os.ftruncate(fd, torn.offset)
        os.fsync(fd)

    def _write(self, fd: int, data: bytes) -> None:
        global _appends
        _appends += 1
        tear = os.environ.get(FAILPOINT_ENV)
        if tear:
            size, _, at = tear.partition("@")
            if _appends == int(at or "1"):
                os.write(fd, data[: int(size)])
                os.fsync(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if self._fsync:
            os.fsync(fd)


class AuditHold:
    """The audit log's lock, held: append under it, then release it (once, from any thread)."""

    def __init__(self, log: AuditLog, fd: int) -> None:
        self._log = log
        self.fd = fd
        self._held = True

    def sync(self, rows_after: Callable[[int], Sequence[AuditRecord]]) -> SyncResult:
        """`AuditLog.sync` under this hold."""
        if not self._held:
            raise RuntimeError("the audit log's lock was released")
        return self._log._sync_locked(self.fd, rows_after)

    def release(self) -> None:
        if self._held:
            self._held = False
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                self._log._mutex.release()


# -- verification -------------------------------------------------------------------------------


def _seq_lines(entries: list[dict[str, Any] | str]) -> dict[int, int]:
    where: dict[int, int] = {}
    for i, e in enumerate(entries, start=1):
        if isinstance(e, dict):
            where.setdefault(e["seq"], i)
    return where


def verify_bytes(data: bytes, store_rows: Sequence[AuditRecord] | None = None) -> Verdict:
    """Walk the chain in `data`; with the store's rows, also check each line against its row
    and that no row is missing at the end.

    The first problem wins, in file order: a bad line in the middle is reported before a torn
    tail, and a torn tail before rows missing at the end.
    """
    torn: bytes | None = None
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n")
        torn = data[cut + 1 :]
        data = data[: cut + 1]
    raw_lines = data.split(b"\n")[:-1] if data else []
    entries: list[dict[str, Any] | str] = [parse_line(r) for r in raw_lines]
    seq_at = _seq_lines(entries)
    rows = {r.rid: r for r in store_rows} if store_rows is not None else None
    prev_hash, prev_rid, prev_seq = GENESIS, 0, 0
    for i, e in enumerate(entries, start=1):
        if isinstance(e, str):
            return Verdict(i - 1, Problem(i, "malformed", f"line {i} is not an audit entry: {e}; edited or corrupted"))
        seq = e["seq"]
        if entry_hash(e) != e["hash"]:
            return Verdict(i - 1, Problem(i, "edited", f"line {i} (seq {seq}) does not match its own hash: edited"))
        expected = prev_seq + 1
        if seq < expected:
            first = seq_at.get(seq, i)
            return Verdict(
                i - 1,
                Problem(i, "reordered", f"line {i} holds seq {seq}, which belongs before line {first}: reordered"),
            )
        if seq > expected:
            later = seq_at.get(expected)
            if later is not None and later > i:
                return Verdict(
                    i - 1,
                    Problem(
                        i, "reordered", f"line {i} holds seq {seq} but seq {expected} is at line {later}: reordered"
                    ),
                )
            gap = f"seq {expected}" if seq == expected + 1 else f"seq {expected} to {seq - 1}"
            return Verdict(i - 1, Problem(i, "removed", f"{gap} missing before line {i}: removed"))
        if e["prev"] != prev_hash:
            what = "line 1 does not start the chain" if i == 1 else f"line {i - 1} was rewritten with a new hash"
            return Verdict(
                i - 1, Problem(i, "edited", f"line {i} (seq {seq}): prev does not match the line before: {what}")
            )
        if e["rid"] <= prev_rid:
            return Verdict(i - 1, Problem(i, "edited", f"line {i} (seq {seq}): rid {e['rid']} does not increase"))
        if rows is not None:
            row = rows.get(e["rid"])
            diff = _differs(e, row)
            if diff is not None:
                return Verdict(i - 1, Problem(i, "edited", f"line {i} (seq {seq}) {diff}: edited"))
        prev_hash, prev_rid, prev_seq = e["hash"], e["rid"], seq
    n = len(entries)
    if torn is not None:
        return Verdict(
            n,
            Problem(
                n + 1,
                "torn",
                f"line {n + 1} is torn: {len(torn)} byte(s) without a newline at the end (a writer died "
                f"mid-append, or the file was cut mid-line); the {n} line(s) before it verify; "
                "'ztca audit repair' sets it aside and appends its row again from the store",
            ),
        )
    if rows is not None:
        missing = sorted(rid for rid in rows if rid > prev_rid)
        if missing:
            return Verdict(
                n,
                Problem(
                    n + 1,
                    "truncated",
                    f"the file ends after line {n} (store row {prev_rid}) but the store holds {len(missing)} "
                    f"more row(s) ({missing[0]} to {missing[-1]}): lines were removed from the end, or a writer "
                    "died between commit and append; 'ztca audit repair' appends them from the store",
                ),
            )
    return Verdict(n)


def _differs(entry: dict[str, Any], row: AuditRecord | None) -> str | None:
    if row is None:
        return f"names store row {entry['rid']}, which the store does not hold"
    for k in ("actor", "action", "subject", "outcome", "detail"):
        if entry[k] != getattr(row, k):
            return f"differs from store row {row.rid} in {k}"
    if entry["ts"] != utc_ms(row.ts):
        return f"differs from store row {row.rid} in ts"
    return None


def verify_file(path: Path, store_rows: Sequence[AuditRecord] | None = None) -> Verdict:
    """Verify the file under a shared lock (no writer is half-way through an append)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return verify_bytes(b"", store_rows)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return verify_bytes(b"".join(chunks), store_rows)
