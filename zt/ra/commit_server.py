"""The host's recorder: one process that records every worker's issuances in shared group commits.

Why a process of its own: a worker that ran its own group-commit writer (zt.ra.group_commit)
had two threads besides its event loop, and all three wanted the one GIL. The sqlite3 module
lets go of the GIL around every statement, so the writer and the loop handed it back and forth
a dozen times per issuance: futex wake-ups, context switches, and a writer that waited for its
own process's GIL while holding the store's write lock, which the other worker was waiting for.
Measured on 2 cores at 32 clients: the workers' event loops alone (nothing recorded) spent
0.82 ms of CPU per certificate; with their writers, 1.19 ms. Here the workers only sign and
answer; this process does every issuance's recording transaction, and a batch now holds the
issuances of all workers: one transaction, one WAL fsync and one audit append for both.

What it runs is the worker's own code (`RegistrationAuthority.record_issue` inside
`GroupCommit`), on its own handle on the store; nothing about durability changes: a worker
answers only after this process has committed the batch and fsync'd its audit lines, a kill -9
of either leaves the store whole (one SQLite transaction), and a request whose recorder went
away gets 503 (a retry with the same token and key then gets the certificate if it was
recorded: the idempotent retry).

The socket: a Unix socket in a directory only the RA's user can enter (0700, made by zt-ra for
this run); a peer whose uid is not ours is dropped before anything is read (SO_PEERCRED). The
messages are values (zt.ra.commit_wire): nothing a peer sends is executed.

Life: zt-ra starts it before its workers and stops it (SIGTERM) after they are gone; it commits
what is pending first. It ignores SIGINT (a ^C reaches the whole process group, and the workers
still finish their requests) and ends with its parent (PR_SET_PDEATHSIG), so a kill -9 of zt-ra
leaves no recorder behind.
"""

from __future__ import annotations

import ctypes
import logging
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from zt import logjson
from zt.clock import SystemClock
from zt.errors import StoreError
from zt.logjson import log_event
from zt.ra.app import build_ra
from zt.ra.commit_wire import FrameReader, WireError, frame, issue_from_wire, outcome_to_wire
from zt.ra.group_commit import LINGER, MAX_BATCH, GroupCommit
from zt.ra.service import RegistrationAuthority
from zt.ra.settings import RaSettings
from zt.ra.signed_issue import IssueOutcome, SignedIssue
from zt.ra.store_api import Conn

log = logging.getLogger("zt.ra")

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
PROCESS_NAME = "zt-ra-recorder"
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_READ_SIZE = 256 * 1024
_IDLE = 1.0  # seconds between looks at the stop flag and the parent while nothing is pending


class _Peer:
    """One worker's connection, and the answers waiting to be sent to it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = FrameReader()
        self.busy = 0  # the worker's requests in progress, as it said with its last message
        self._outbox: list[bytes] = []
        self._lock = threading.Lock()  # the appender queues and sends, the loop closes
        self.closed = False

    def queue(self, data: bytes) -> None:
        with self._lock:
            self._outbox.append(data)

    def flush(self) -> None:
        with self._lock:
            data = b"".join(self._outbox)
            self._outbox.clear()
            if not data or self.closed:
                return
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True  # the worker went away; the loop drops it at its next read

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self.sock.close()


@dataclass
class _Pending:
    peer: _Peer
    ident: int
    signed: SignedIssue
    at: float  # when it was read (time.monotonic)


class CommitServer:
    """One thread reads the workers' issuances and commits them in batches (the appender of
    GroupCommit fsyncs each batch's audit lines and answers)."""

    def __init__(self, ra: RegistrationAuthority, path: Path, *, linger: float = LINGER) -> None:
        self.ra = ra
        self.path = path
        self.linger = linger
        self._peers: list[_Peer] = []
        self._pending: list[_Pending] = []
        self.committer = GroupCommit(ra.store, answered=self._flush)
        # Bound and listening under a temporary name, then renamed into place: the path appears
        # only when a connection to it can succeed (zt-ra waits for it; a restarted recorder
        # replaces its dead predecessor's socket in one step).
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        fresh = path.with_name(path.name + ".new")
        fresh.unlink(missing_ok=True)
        self._listener.bind(str(fresh))
        os.chmod(fresh, 0o600)
        self._listener.listen(64)
        self._listener.setblocking(False)
        os.replace(fresh, path)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        # A plain flag, not a threading.Event: `stop` runs in a signal handler, and a handler
        # that interrupts another one inside Event.set() would wait on the lock that one holds
        # (seen: three SIGTERMs, a recorder deadlocked on its own main thread).
        self._stopping = False
        self._committed = 0  # issuances committed (the loop counts), and answered (the appender)
        self._answered = 0

    def stop(self) -> None:
        """From a signal handler: the loop ends at its next wake-up (at most `_IDLE` later)."""
        self._stopping = True

    def serve(self, alive: Callable[[], bool]) -> None:
        """Until `stop` or until `alive()` says no: read, batch, commit; then commit what is left."""
        try:
            while not self._stopping and alive():
                for key, _ in self._selector.select(self._timeout()):
                    if key.data is None:
                        self._accept()
                    else:
                        self._read(key.data)
                if self._pending and self._due():
                    self._commit()
            while self._pending:
                self._commit()
        finally:
            self._selector.close()
            self._listener.close()
            self.committer.close()  # the appender answers the last batch
            for peer in list(self._peers):
                peer.close()
            self.ra.store.close()

    # -- reading -------------------------------------------------------------------------------

    def _accept(self) -> None:
        try:
            sock, _ = self._listener.accept()
        except OSError:
            return
        pid, uid, _gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
        if uid != os.getuid():
            log_event(log, "recorder_peer_refused", logging.WARNING, peer_pid=pid, peer_uid=uid)
            sock.close()
            return
        sock.setblocking(False)
        peer = _Peer(sock)
        self._peers.append(peer)
        self._selector.register(sock, selectors.EVENT_READ, peer)

    def _read(self, peer: _Peer) -> None:
        try:
            data = peer.sock.recv(_READ_SIZE)
            if not data:
                raise ConnectionResetError("the worker closed the connection")
            for message in peer.reader.feed(data):
                self._take(peer, message)
        except BlockingIOError:
            return
        except (OSError, WireError) as e:
            if not isinstance(e, ConnectionResetError):
                log_event(log, "recorder_peer_dropped", logging.WARNING, reason=str(e))
            self._selector.unregister(peer.sock)
            self._peers.remove(peer)
            # Its pending issuances are still recorded (their effects may be retried), unanswered.
            peer.close()

    def _take(self, peer: _Peer, message: dict[str, object]) -> None:
        busy = message.get("busy")
        if not isinstance(busy, int):
            raise WireError("message needs an integer busy count")
        peer.busy = busy
        if "issue" not in message:
            return  # only the count: a request the worker had counted will not come
        ident, issue = message.get("id"), message.get("issue")
        if not isinstance(ident, int) or not isinstance(issue, dict):
            raise WireError("an issuance needs an integer id and an issue object")
        self._pending.append(_Pending(peer, ident, issue_from_wire(issue), time.monotonic()))

    # -- batching ------------------------------------------------------------------------------

    def _due(self) -> bool:
        """Whether the batch goes now: when it is full, when its oldest issuance has waited
        `linger`, or when every request the workers are working on (their `busy` counts, as
        each said last) is here already, pending or in a batch not yet answered: nothing else
        is on its way. At 8 clients on 2 cores this waited 6.1-7.0 ms per request at p50
        against 7.7-8.1 for zt.ra.group_commit's rule (wait out the linger whenever requests
        come close together), the same CPU per certificate; at 32 clients the two were alike."""
        if len(self._pending) >= MAX_BATCH or time.monotonic() >= self._pending[0].at + self.linger:
            return True
        here = len(self._pending) + self._committed - self._answered
        return sum(p.busy for p in self._peers) <= here

    def _timeout(self) -> float:
        if not self._pending:
            return _IDLE
        return max(0.0, self._pending[0].at + self.linger - time.monotonic())

    def _commit(self) -> None:
        batch = self._pending[:MAX_BATCH]
        del self._pending[:MAX_BATCH]
        self._committed += len(batch)
        self.committer.commit_now([(self._work(p), self._answer(p)) for p in batch])

    def _work(self, p: _Pending) -> Callable[[Conn], IssueOutcome]:
        return lambda c: self.ra.record_issue(c, p.signed)

    def _answer(self, p: _Pending) -> Callable[[Future[IssueOutcome]], None]:
        def answer(future: Future[IssueOutcome]) -> None:
            error = future.exception()
            outcome: IssueOutcome = error if isinstance(error, Exception) else future.result()
            settled = p.signed.ticket is not None and p.signed.ticket.settled
            p.peer.queue(frame({"id": p.ident, **outcome_to_wire(outcome, settled)}))
            self._answered += 1

        return answer

    def _flush(self) -> None:
        """After a batch's answers (the appender): one send per worker."""
        for peer in list(self._peers):
            peer.flush()


def _die_with_parent(parent: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        libc.prctl(_PR_SET_NAME, PROCESS_NAME.encode())  # what ps and /proc/<pid>/comm show
    except (OSError, AttributeError):
        pass  # not Linux: the parent still stops it at its own end
    if os.getppid() != parent:
        os._exit(0)  # the parent died before the request took hold


def run(settings_json: str, path: str, parent: int) -> None:
    """The recorder process's entry (multiprocessing, spawn)."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    settings = RaSettings.from_json(settings_json)
    logjson.setup("zt-ra", settings.log_level)
    try:
        ra = build_ra(settings, SystemClock())
        # A recorder that died mid-append (zt-ra starts another) left a torn last line, or rows
        # committed and not appended: set the one aside and append the others first.
        ra.store.sync_audit()
        server = CommitServer(ra, Path(path))
    except (StoreError, OSError) as e:
        log_event(log, "recorder_failed", logging.ERROR, reason=str(e))
        sys.exit(1)
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    server.serve(lambda: os.getppid() == parent)
