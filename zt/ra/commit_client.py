"""A worker's side of the host's recorder (zt.ra.commit_server): signed issuances out, outcomes in.

On the worker's event loop, with no thread of its own: one Unix-socket connection, opened at
the first issuance and again after it drops, one frame per issuance (zt.ra.commit_wire) and
a future per frame, resolved when the recorder's answer for that `id` comes back. A lost
connection fails every issuance waiting on it with StoreError (503 unavailable): the recorder
may or may not have committed it, and the client's retry with the same token and key gets the
certificate if it did (the idempotent retry).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from zt.errors import StoreError
from zt.ra.commit_wire import FrameReader, WireError, frame, issue_to_wire, outcome_from_wire
from zt.ra.signed_issue import IssueOutcome, SignedIssue

# Where the request under way is (the `expect` around it, in its task's context): its issuance
# not sent, sent, or recorded (answered by the recorder, or failed).
_STATE: ContextVar[list[int] | None] = ContextVar("zt_ra_recorder_state", default=None)
_NOT_SENT, _SENT, _RECORDED = 0, 1, 2


class _Connection(asyncio.Protocol):
    def __init__(self, lost: Callable[[_Connection, Exception], None]) -> None:
        self.transport: asyncio.WriteTransport | None = None
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = FrameReader()
        self._lost = lost
        self._outbox: list[bytes] = []

    def send(self, message: dict[str, Any]) -> None:
        """Queue a frame; the frames queued in one pass of the event loop go out in one write
        at its end (at 32 clients a pass often signs several issuances: one system call and
        one wake-up of the recorder for all of them)."""
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outbox.append(frame(message))

    def _flush(self) -> None:
        data = b"".join(self._outbox)
        self._outbox.clear()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        try:
            answers = self._reader.feed(data)
        except WireError as e:
            self._drop(e)
            return
        for answer in answers:
            waiter = self.waiting.pop(answer.get("id"), None)  # type: ignore[arg-type]
            if waiter is not None and not waiter.done():
                waiter.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self._drop(exc or ConnectionResetError("the recorder closed the connection"))

    def _drop(self, e: Exception) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._lost(self, e)
        error = StoreError(f"the RA's recorder process went away: {e}")
        for waiter in self.waiting.values():
            if not waiter.done():
                waiter.set_exception(error)
        self.waiting.clear()


class RemoteCommit:
    """zt.ra.signed_issue.IssueRecorder over the recorder's socket at `path`."""

    def __init__(self, path: str, busy: Callable[[], int]) -> None:
        self._path = path
        self._busy = busy
        self._ids = itertools.count(1)
        self._conn: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None
        # Requests under `expect` that have their recorder's answer and are still being
        # answered themselves: the HTTP server counts them busy, the recorder must not wait
        # for them (a count sent with them would say more are on their way when none are).
        self._recorded = 0

    def _still_to_record(self, leaving: int = 0) -> int:
        """What the recorder is told this worker is busy with: the requests in progress, less
        those already recorded and `leaving` (a request on its way out that sent nothing)."""
        return max(0, self._busy() - self._recorded - leaving)

    @contextmanager
    def expect(self) -> Iterator[None]:
        """Around one request that will likely call `record`. One that leaves without having
        sent anything (refused) tells the recorder it is done: the recorder counts the requests
        the workers are busy with, and may be waiting for this one."""
        state = [_NOT_SENT]
        token = _STATE.set(state)
        try:
            yield
        finally:
            _STATE.reset(token)
            if state[0] == _RECORDED:
                self._recorded -= 1
            elif state[0] == _NOT_SENT and self._conn is not None and self._conn.transport is not None:
                self._conn.send({"busy": self._still_to_record(leaving=1)})

    async def record(self, signed: SignedIssue) -> IssueOutcome:
        conn = self._conn or await self._connect()
        ident = next(self._ids)
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        conn.waiting[ident] = waiter
        assert conn.transport is not None
        state = _STATE.get()
        if state is not None:
            state[0] = _SENT
        message = {"id": ident, "busy": self._still_to_record(), "issue": issue_to_wire(signed)}
        conn.send(message)
        try:
            answer = await waiter
        finally:
            conn.waiting.pop(ident, None)
            if state is not None:
                state[0] = _RECORDED
                self._recorded += 1
        try:
            outcome, settled = outcome_from_wire(answer)
        except WireError as e:
            raise StoreError(f"the RA's recorder answered something else: {e}") from e
        if settled and signed.ticket is not None:
            signed.ticket.settled = True
        return outcome

    async def _connect(self) -> _Connection:
        """One connection attempt at a time; the issuances that arrive meanwhile wait for it."""
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._open())
        return await asyncio.shield(self._connecting)

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_unix_connection(lambda: _Connection(self._lost), self._path)
        except OSError as e:
            raise StoreError(f"cannot reach the RA's recorder process at {self._path}: {e}") from e
        self._conn = conn
        return conn

    def _lost(self, conn: _Connection, _e: Exception) -> None:
        if self._conn is conn:
            self._conn = None

    async def aclose(self) -> None:
        if self._conn is not None and self._conn.transport is not None:
            self._conn.transport.close()
        self._conn = None
