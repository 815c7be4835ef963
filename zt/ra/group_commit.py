"""Group commit: the recording transactions of many issuances in one transaction and one fsync.

Recording an issuance is short (spend the token, insert the certificate, count the limits,
one audit row: well under a millisecond of SQLite work), but making it durable is not: with
`--durability full` every COMMIT fsyncs the WAL, and the audit log (zt.auditlog) fsyncs its
appended lines, so one transaction per request costs two fsyncs (measured here: ~9 ms for the
audit one alone) under the store's write lock, and requests queue behind each other's fsyncs.

`GroupCommit` runs one writer thread per process. A request hands it a `work(conn)` function
(the same one the unbatched path runs inside `StateStore.write()`) and waits for its batch. The
writer takes every pending request, opens ONE `StateStore.write()` transaction, runs each request's
work in a SAVEPOINT of its own, and commits: one WAL fsync, and one audit-log append and fsync
for the whole batch (StateStore.write appends every committed audit row after COMMIT). Only then
are the requests answered, so an answer still means "fsync'd": the batch is durable as a
whole or not at all.

Each request keeps its own outcome. A work function that raises (a token spent meanwhile, a
revocation that won a race) has its savepoint rolled back, and nothing it wrote stays; the
others in the batch commit. A work function that wants its writes kept and its caller refused
(a rate-limit refusal counts the hit and audits it) returns the refusal instead of raising it.
If the transaction itself fails (the store is unreachable, the audit append fails after
COMMIT) every request of the batch gets that StoreError, exactly as each would have alone.

Kill -9: the batch is one SQLite transaction; a kill before its COMMIT leaves none of it, after
it all of it (and `StateStore.sync_audit` at the next start appends the audit lines a killed writer
did not). No request was answered before the COMMIT and the audit fsync.

The two fsyncs of a batch overlap with the next batch's (a pipeline of depth one): the writer
commits with `StateStore.write_deferred`, which takes the audit log's lock before it releases
the write lock, and hands the batch to a second thread, the appender, which appends and fsyncs
its audit lines and then answers its requests. Meanwhile the writer runs the next batch's
statements and COMMIT (the WAL fsync); it then queues for the audit lock behind the appender.
So a line is still written only after its row is durable, lines keep commit order, and a
request is still answered only after both fsyncs of its batch. Measured here: two fsyncs on
two files in parallel take about as long as one.

A batch waits a little for more (linger: PostgreSQL's `commit_delay` with `commit_siblings`,
in spirit). Each batch costs about 0.7 ms of CPU of its own (two fsyncs at ~0.13 ms of CPU each
on this machine, the wake-ups of three threads, BEGIN and COMMIT, the audit append), and batches
made as requests came were small: 1.6 requests at 8 clients, 4.5 at 32 (two workers), so the
per-batch cost decided much of the RA's CPU per certificate at 8 clients. Two signals, each
bounded by `linger` (4 ms):

- *Dense*: the oldest pending request came within `linger` of the one before it, while the
  process was working on other requests too (`siblings`, the HTTP server's count of requests
  read and not answered), then or when that one came. The batch waits until `linger` after it:
  more are likely on their way. Measured side by side: batches of 2.9-4.4 at 8 clients, 14-20%
  less CPU per certificate; at 32 clients no change (4 ms: 2 ms and 3 ms gained less, 6 ms lost).
- *Under way*: the issue endpoint says when a request arrives and leaves (`expect`); one the
  loop has started and not yet submitted will come, so the batch waits for it, and commits as
  soon as none is left (a refused one wakes the writer on its way out) or the batch is full.

One client on its own never waits: nothing else is in progress when its next request comes,
however quickly it follows its answer.

The store's schema is untouched: this layer only calls `StateStore.write_deferred()`, and the
savepoint statements are transaction control. Several worker processes each run their own
writer; their batches serialise on the store's write lock like single transactions did, and
one worker's audit append overlaps the other's commit.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from zt.logjson import log_event
from zt.ra.store_api import Conn, PendingAppend, StateStore

log = logging.getLogger("zt.ra")

T = TypeVar("T")

# A bound on one transaction's size: a batch this large already spreads each fsync over
# hundreds of issuances, and the write lock is not held for long by any one writer.
MAX_BATCH = 256
# How long a batch may wait for more requests (see "A batch waits a little for more" above).
LINGER = 0.004


@dataclass
class _Request(Generic[T]):
    work: Callable[[Conn], T]
    future: Future[T]
    at: float = 0.0  # when it was submitted (time.monotonic)
    dense: bool = False  # within `linger` of the request before it, several clients at work


@dataclass
class _Committed:
    """A batch whose transaction committed, waiting for its audit lines (if any) to be fsync'd."""

    requests: list[_Request[Any]]
    outcomes: list[tuple[bool, Any]]
    pending: PendingAppend | None


class GroupCommit:
    """One writer thread that commits every pending request's work in one transaction."""

    def __init__(
        self,
        store: StateStore,
        *,
        max_batch: int = MAX_BATCH,
        linger: float = LINGER,
        siblings: Callable[[], int] | None = None,
        answered: Callable[[], None] | None = None,
    ) -> None:
        """`siblings`, when given, counts the requests the process is working on (the HTTP
        server's count: zt.httpedge.requests_in_progress); without it, those submitted here and
        not yet answered stand in for them. `answered`, when given, is called on the appender
        thread after each batch's futures are resolved (zt.ra.commit_server sends the batch's
        answers in one write per worker)."""
        self._store = store
        self._max_batch = max_batch
        self._linger = linger
        self._siblings = siblings
        self._answered_hook = answered
        # Written on the event loop's thread only, read by the writer: requests under `expect`,
        # and those of them submitted and not yet returned. Their difference is the number of
        # requests the loop has started and will submit soon (or refuse).
        self._expected = 0
        self._submitted = 0
        self._lingering = False  # the writer waits for more requests (set under _wake)
        self._lingering_dense = False  # ... for the time left of a linger, however many are coming
        self._last_submit = float("-inf")
        self._unanswered = 0  # without `siblings`: submitted, future not done yet (under _wake)
        self._last_concurrent = False  # whether others were unanswered when the last one came
        self._pending: list[_Request[Any]] = []
        self._wake = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._appender: threading.Thread | None = None
        self._committed: queue.SimpleQueue[_Committed | None] = queue.SimpleQueue()
        self.batches = 0  # commits made, and requests in them: for the benchmark's profile
        self.requests = 0

    def submit(self, work: Callable[[Conn], T]) -> Future[T]:
        """Queue `work`; the future resolves after the batch holding it is committed and fsync'd."""
        return self._submit(work, wake=True)

    def _submit(self, work: Callable[[Conn], T], *, wake: bool) -> Future[T]:
        request: _Request[T] = _Request(work, Future())
        with self._wake:
            self._start_appender()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="zt-ra-group-commit", daemon=True)
                self._thread.start()
            # Dense: close behind the one before, with others unanswered now or when that one
            # came (several clients at once; the first request after a batch's answers finds
            # none unanswered). A single client whose next request follows its answer quickly
            # is never dense: nothing would join it.
            request.at = time.monotonic()
            concurrent = self._siblings() > 1 if self._siblings is not None else self._unanswered > 0
            request.dense = request.at - self._last_submit < self._linger and (concurrent or self._last_concurrent)
            self._last_submit, self._last_concurrent = request.at, concurrent
            if self._siblings is None:  # the stand-in count is kept only where it is read
                self._unanswered += 1
                request.future.add_done_callback(self._answered)
            self._pending.append(request)
            # The first of a batch wakes an idle writer; while it lingers, only a full batch, or
            # (when it waits for requests under way) the last of those, wakes it early.
            if (
                wake
                or not self._lingering
                or len(self._pending) >= self._max_batch
                or (not self._lingering_dense and self._coming() <= 0)
            ):
                self._wake.notify()
        return request.future

    def _start_appender(self) -> None:
        """Under `_wake`: refuse work once closed; the appender thread starts with the first."""
        if self._closed:
            raise RuntimeError("group commit is closed")
        if self._appender is None:
            self._appender = threading.Thread(target=self._append, name="zt-ra-audit-append", daemon=True)
            self._appender.start()

    def _answered(self, _future: Future[Any]) -> None:
        with self._wake:
            self._unanswered -= 1

    def _coming(self) -> int:
        """Requests the loop has started and not yet submitted (a snapshot: the loop may be
        mid-step; a wrong guess costs at most one linger or one early commit)."""
        return self._expected - self._submitted

    @contextmanager
    def expect(self) -> Iterator[None]:
        """On the event loop, around one request that will (likely) call `run_async`: while it is
        under way, a batch lingers for it. Leaving without having submitted (refused, failed)
        wakes a writer that would otherwise wait for it until the linger runs out."""
        self._expected += 1
        try:
            yield
        finally:
            self._expected -= 1
            if self._lingering and not self._lingering_dense and self._coming() <= 0:
                with self._wake:
                    self._wake.notify()

    def run(self, work: Callable[[Conn], T]) -> T:
        """From a thread: wait for `work`'s batch and return its result (or raise its exception)."""
        return self.submit(work).result()

    async def run_async(self, work: Callable[[Conn], T]) -> T:
        """From the event loop: the same, without blocking the loop while the batch commits."""
        self._submitted += 1  # before the submit: its check of what is still coming counts this one
        try:
            return await asyncio.wrap_future(self._submit(work, wake=False))
        finally:
            self._submitted -= 1

    def commit_now(self, works: list[tuple[Callable[[Conn], Any], Callable[[Future[Any]], None]]]) -> None:
        """On the caller's thread, which is then the writer (zt.ra.commit_server batches by
        itself): one transaction for the `(work, done)` pairs, now. Each `done` gets its work's
        future once resolved, on the appender thread after the batch's audit lines are fsync'd
        (as `submit`'s futures), then `answered` runs. Not to be mixed with `submit`."""
        batch: list[_Request[Any]] = []
        for work, done in works:
            request: _Request[Any] = _Request(work, Future())
            request.future.add_done_callback(done)
            batch.append(request)
        with self._wake:
            self._start_appender()
        try:
            committed = self._commit(batch)
        except BaseException as e:  # noqa: BLE001 - the caller's loop must outlive any one batch
            self._fail(batch, e)
            if self._answered_hook is not None:
                self._answered_hook()
        else:
            if committed is not None:
                self._committed.put(committed)

    def close(self) -> None:
        """Commit what is pending, then stop the writer."""
        with self._wake:
            self._closed = True
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join()  # the writer hands the appender its last batch, then the end
        elif self._appender is not None:
            self._committed.put(None)  # commit_now's caller was the writer
        if self._appender is not None:
            self._appender.join()

    # -- the writer ----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._wake:
                    while not self._pending and not self._closed:
                        self._wake.wait()
                    if not self._pending:
                        return
                    self._linger_for_coming()
                    batch = self._pending[: self._max_batch]
                    del self._pending[: self._max_batch]
                try:
                    committed = self._commit(batch)
                except BaseException as e:  # noqa: BLE001 - the writer must outlive any one batch
                    self._fail(batch, e)
                    if self._answered_hook is not None:
                        self._answered_hook()
                    continue
                if committed is not None:
                    self._committed.put(committed)
        finally:
            self._committed.put(None)

    def _linger_for_coming(self) -> None:
        """Under `_wake`, with requests pending: wait for more, at most `linger`, while the batch
        has room. When requests have been coming closer together than `linger` from several
        clients at once (the oldest pending one followed another that closely, with others
        unanswered), wait until `linger` after the oldest one was submitted: more are likely on
        their way. Otherwise wait only while requests the loop has started are still to be
        submitted; one client on its own never waits."""
        first = self._pending[0]
        self._lingering_dense = first.dense
        deadline = (first.at if first.dense else time.monotonic()) + self._linger
        self._lingering = True
        try:
            while len(self._pending) < self._max_batch and not self._closed:
                if not self._lingering_dense and self._coming() <= 0:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._wake.wait(left)
        finally:
            self._lingering = False
            self._lingering_dense = False

    def _commit(self, batch: list[_Request[Any]]) -> _Committed | None:
        # A request whose waiter went away before its turn (a cancelled request) is skipped:
        # nothing is recorded for an answer nobody will read.
        live = [r for r in batch if r.future.set_running_or_notify_cancel()]
        if not live:
            return None

        def work(conn: Conn) -> list[tuple[bool, Any]]:
            return [_in_savepoint(conn, r.work) for r in live]

        outcomes, pending = self._store.write_deferred(work)
        return _Committed(live, outcomes, pending)

    def _append(self) -> None:
        """The appender: the committed batches' audit lines, in commit order, then the answers."""
        while (done := self._committed.get()) is not None:
            try:
                if done.pending is not None:
                    done.pending.finish()
            except BaseException as e:  # noqa: BLE001 - committed, but not in the audit log: no answer
                self._fail(done.requests, e)
            else:
                # Committed, and the audit lines appended and fsync'd: now answer.
                self.batches += 1
                self.requests += len(done.requests)
                for r, (ok, value) in zip(done.requests, done.outcomes, strict=True):
                    if ok:
                        r.future.set_result(value)
                    else:
                        r.future.set_exception(value)
            if self._answered_hook is not None:
                self._answered_hook()

    @staticmethod
    def _fail(requests: list[_Request[Any]], e: BaseException) -> None:
        log_event(log, "group_commit_failed", logging.ERROR, reason=str(e), requests=len(requests))
        for r in requests:
            if not r.future.done():
                r.future.set_exception(e)


def _in_savepoint(conn: Conn, work: Callable[[Conn], Any]) -> tuple[bool, Any]:
    """Run one request's work so that its failure undoes its writes only (a SAVEPOINT: SQLite and PostgreSQL alike)."""
    # Whether the transaction has audit rows so far (StateStore.audit sets it): a rolled-back
    # request's audit row is gone, and the flag must say so, or the commit would look for it.
    audited = getattr(conn, "audited", False)
    conn.execute("SAVEPOINT zt_request")
    try:
        value = work(conn)
    except Exception as e:  # noqa: BLE001 - handed to the request's own waiter
        conn.execute("ROLLBACK TO zt_request")
        conn.execute("RELEASE zt_request")
        if hasattr(conn, "audited"):
            conn.audited = audited
        return False, e
    conn.execute("RELEASE zt_request")
    return True, value
