"""uvicorn, bounded at the connection level: what the RA and the CRL publisher need in front of them.

uvicorn closes an *idle* keep-alive connection after `timeout_keep_alive`, but nothing bounds
the size of a request head under its C parser (httptools), nor the *time* a
client may take to send that head: a slowloris client that opens a connection and sends one
header byte every few seconds holds a socket, a file descriptor and a protocol object for
as long as it likes (measured before this module: more than 30 s, no limit). A TLS server has
the same hole one step earlier: asyncio gives a half-done handshake 60 s, and a closing TLS
connection whose peer never answers close_notify another 30 s.

This module closes both holes with three small pieces, each on uvicorn's public API:

- `HeadTimeoutProtocol` (uvicorn's httptools protocol: the C parser llhttp; measured ~10% of
  the RA's CPU per issuance went to the pure-Python h11 before) arms a timer whenever it waits
  for a request head (connection made, previous response finished) and closes the connection
  when the timer fires before the parser has seen a complete head. Data arriving does not reset
  it, which is what defeats a byte-at-a-time drip. It also caps a head at MAX_HEAD_BYTES (what
  h11's `max_incomplete_event_size` did): a larger one is answered 400 and closed, as uvicorn
  answers any head its parser refuses. Bodies are not covered: the RA and the publisher read
  at most a small body (`--max-body`), and the concurrency cap bounds the rest.
- The same protocol refuses connections over `max_connections` per process: every request
  on such a connection gets 503 JSON `{"error": "over_capacity"}` and `Connection: close`.
  uvicorn's own `limit_concurrency` answers a plain-text 503; ours is counted when the
  connection is made, so half-sent heads count against the cap from the first byte.
- `EdgeConfig` runs the server on an asyncio loop whose `create_server` passes
  `ssl_handshake_timeout` and `ssl_shutdown_timeout` (the same `header_timeout`), so a
  half-done TLS handshake and an unanswered close_notify are bounded too.

A legitimate client sends its TLS handshake and head in a few milliseconds; the default
header timeout (10 s) leaves room for a loaded machine. Limits are per worker process.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import functools
import json
import logging
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from zt.durations import parse_duration
from zt.errors import ConfigError
from zt.logjson import log_event

log = logging.getLogger("zt.edge")

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_MAX_CONNECTIONS = 1000
MAX_HEAD_BYTES = 16 * 1024  # the largest request head (request line + headers) a client may send

# Requests whose head this process has parsed and whose answer is not complete yet, over all its
# connections (HeadTimeoutProtocol keeps it; the event loop's thread only).
_in_progress = 0


def requests_in_progress() -> int:
    """How many requests this process is working on now: read, and not yet answered. The RA's
    group commit reads it (from another thread: a snapshot is enough) to tell one client from
    several at once."""
    return _in_progress


@dataclass(frozen=True)
class EdgeLimits:
    """How long a client may take to send its TLS handshake and each request head, and how
    many connections one worker process keeps open at most."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def __post_init__(self) -> None:
        if not self.header_timeout > 0:
            raise ConfigError(f"--header-timeout must be more than 0 (got {self.header_timeout}s)")
        if self.max_connections < 1:
            raise ConfigError(f"--max-connections must be at least 1 (got {self.max_connections})")


def add_edge_arguments(parser: argparse.ArgumentParser, max_connections: int = DEFAULT_MAX_CONNECTIONS) -> None:
    """The two flags both daemons take, with one help text; a daemon may pick its own default
    connection cap (the CRL publisher holds long-poll requests open, zt.crl.main)."""
    parser.add_argument(
        "--header-timeout",
        type=parse_duration,
        default=parse_duration(f"{DEFAULT_HEADER_TIMEOUT:g}s"),
        help="close a connection whose TLS handshake or request head is not complete within this "
        f"time, e.g. 5s (default: {DEFAULT_HEADER_TIMEOUT:g}s)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=max_connections,
        help="open connections per worker process; requests on connections over it get 503 "
        f"over_capacity (default: {max_connections})",
    )


def limits_from(args: argparse.Namespace) -> EdgeLimits:
    return EdgeLimits(header_timeout=args.header_timeout.total_seconds(), max_connections=args.max_connections)


class _HandshakeBoundedLoop(uvloop.Loop):
    """uvloop's event loop, whose TLS servers bound the handshake and the closing handshake.

    uvloop rather than asyncio's selector loop: its TCP and TLS transports are compiled
    (libuv, Cython), where asyncio's TLS layer is pure Python; measured here, 12% less CPU per
    certificate issued and 14-20% more certificates a second (docs/performance.md).
    uvicorn creates its servers with `loop.create_server(..., ssl=...)` and no timeouts, so the
    loop's defaults (60 s handshake, 30 s shutdown) would apply; this loop supplies ours.
    """

    def __init__(self, timeout: float, own_socket: bool = False) -> None:
        super().__init__()
        self._tls_timeout = timeout
        self._own_socket = own_socket

    async def create_server(self, *args: Any, **kwargs: Any) -> asyncio.Server:
        server = await super().create_server(*args, **_bounded(kwargs, self._tls_timeout, self._own_socket))
        return cast(asyncio.Server, server)  # uvloop's own Server, with asyncio.Server's methods


def _bounded(kwargs: dict[str, Any], timeout: float, own_socket: bool) -> dict[str, Any]:
    if kwargs.get("ssl") is not None:
        kwargs.setdefault("ssl_handshake_timeout", timeout)
        kwargs.setdefault("ssl_shutdown_timeout", timeout)
    sock = kwargs.get("sock")
    if own_socket and isinstance(sock, socket.socket):
        kwargs["sock"] = reuse_port_socket(sock)
    return kwargs


def reuse_port_socket(shared: socket.socket) -> socket.socket:
    """This worker's own listening socket on the address of `shared` (SO_REUSEPORT, Linux).

    Worker processes that accept from one shared socket split keep-alive connections unevenly:
    a worker whose loop is free takes a whole burst of new connections at once, and they stay
    with it. With a socket per worker in one SO_REUSEPORT group the kernel spreads connections
    over the workers by a hash of the peer's address and port. The shared socket (bound by the
    supervisor with SO_REUSEPORT, never listening) only holds the port.
    """
    own = socket.socket(shared.family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    own.bind(shared.getsockname())
    shared.close()
    return own


class EdgeConfig(uvicorn.Config):
    """`uvicorn.Config` with `HeadTimeoutProtocol` and the bounded loop.

    A subclass rather than fields on the side because uvicorn hands the config object to
    each worker process (pickled) and to every protocol instance: the limits travel with it.
    The loop is always uvloop's, subclassed here for the TLS bounds.
    """

    def __init__(self, app: Any, limits: EdgeLimits, *, reuse_port: bool = False, **kwargs: Any) -> None:
        # The client address is the TCP peer, always, for both daemons: uvicorn would otherwise
        # take it from X-Forwarded-For on connections from 127.0.0.1, and the RA's per-source
        # rate limit and token lockout (and any log line naming the client) would be keyed by
        # whatever a local client claims. Neither daemon is meant to sit behind a proxy.
        kwargs["proxy_headers"] = False
        super().__init__(app, http=HeadTimeoutProtocol, loop="uvloop", **kwargs)
        self.limits = limits
        # Each worker process listens on a socket of its own (`reuse_port_socket`).
        self.reuse_port = reuse_port

    def get_loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop]:
        return functools.partial(_HandshakeBoundedLoop, self.limits.header_timeout, self.reuse_port)


class HeadWithBody:
    """The transport a request's cycle writes its answer through: the response head is held
    and sent in one write with the first piece of the body.

    uvicorn writes an answer's head and its body separately; on a TLS connection each write
    is a TLS record of its own, encrypted and sent by its own system call. One write instead of
    two halves that for the RA's answers, which are small and whole. Only the head is held,
    and only until the next write, a close, or the end of the response (`flush`, from the
    protocol's `on_response_complete`: a HEAD answer has no body write); a `100 Continue`
    interim answer goes out at once.
    Everything else is the connection's transport itself.
    """

    __slots__ = ("_head", "_started", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None
        self._started = False

    def write(self, data: bytes) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            self._transport.write(head + data)
        elif not self._started and not data.startswith(b"HTTP/1.1 100 "):
            self._started = True
            self._head = data
        else:
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def flush(self) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            self._transport.write(head)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def close_once_answered(
    transport: asyncio.Transport, loop: asyncio.AbstractEventLoop, patience: float, lost: Callable[[], bool]
) -> None:
    """Close a connection the server is closing once its answer is out and the client has had a
    bounded chance to finish sending (a lingering close with a byte limit, as nginx's
    `lingering_close` with a size instead of only a time).

    A TLS transport that closes sends close_notify and then waits, up to the shutdown timeout,
    for the client's; uvloop's keeps reading meanwhile and discards what it reads, so a client
    that goes on uploading after its 413 would be drained, at loopback speed, for the whole
    timeout (CI saw 10 MB taken in a few milliseconds after the 413). Shutting the socket down
    for reading does not stop that on Linux (`recv` still returns what arrives), nor does a FIN
    with the socket shut for reading once the client has filled the receive window (its data is
    then out of the window and dropped, not reset, and the client waits). What does is closing
    the socket: the kernel resets a connection closed with data unread or receiving more, and
    the client's next send fails.

    Closing at once is too soon, though: a client still sending the body its 413 refused
    (requests and urllib3 send the whole body before they read) would get a reset instead of
    the answer (CI's schemathesis run saw it as "EOF occurred in violation of protocol"). So,
    once the kernel has sent every byte of the answer (`SIOCOUTQNSD` is 0; uvloop writes at the
    end of the loop's turn), what the client sends is counted (`TCP_INFO`'s bytes received,
    every millisecond while it grows, less often while it does not) and the transport is
    aborted when it passes LINGER_BYTES; a client that stops sending reads the answer and
    closes. `patience` bounds the whole; after it, the transport's own shutdown timeout
    decides. The checks read a duplicate descriptor taken now, while the transport's is surely
    open: the transport may close meanwhile and its descriptor number be reused by another
    connection; the duplicate still names this one. `lost` says whether the connection is gone
    (then there is nothing left to do).
    """
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    try:
        fd = sock.fileno()
        if fd < 0:
            return
        own = socket.socket(fileno=os.dup(fd))
    except OSError:  # already closed by the peer or the transport: nothing left to stop
        return
    _LingeringClose(own, transport, loop, loop.time() + patience, lost).check()


LINGER_BYTES = 1024 * 1024  # what a client may still send after an answer that closes
_POLL_MIN_S, _POLL_MAX_S = 0.001, 0.1
_LINGER_RCVBUF = 64 * 1024
_SIOCOUTQNSD = 0x894B  # Linux: bytes in a TCP socket's send queue not sent yet (linux/sockios.h)
_TCPI_BYTES_RECEIVED = 128  # offset of tcpi_bytes_received (u64) in Linux's struct tcp_info


def _bytes_received(sock: socket.socket) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCPI_BYTES_RECEIVED + 8)
    return int(struct.unpack_from("Q", info, _TCPI_BYTES_RECEIVED)[0])


class _LingeringClose:
    """Wait for the answer to leave, then abort once the client has sent LINGER_BYTES more."""

    def __init__(
        self,
        sock: socket.socket,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        deadline: float,
        lost: Callable[[], bool],
    ) -> None:
        self.sock, self.transport, self.loop, self.deadline, self.lost = sock, transport, loop, deadline, lost
        self.received_at_answer: int | None = None  # bytes received when the answer was out
        self.last_received = 0
        self.poll = _POLL_MIN_S

    def check(self) -> None:
        """The first look: on the next turn of the loop, after the answer's write was attempted."""
        self.loop.call_soon(self._step)

    def _step(self) -> None:
        try:
            if self.lost() or self.loop.time() > self.deadline:
                self.sock.close()
                return
            if self.received_at_answer is None:
                unsent = struct.unpack("i", fcntl.ioctl(self.sock.fileno(), _SIOCOUTQNSD, b"\0\0\0\0"))[0]
                if unsent == 0:
                    self.received_at_answer = self.last_received = _bytes_received(self.sock)
                    # A small receive buffer from now on: what the kernel holds unread for the
                    # client stays small too (autotuning had grown it to megabytes while the
                    # transport read at loopback speed).
                    self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _LINGER_RCVBUF)
                self.loop.call_later(_POLL_MIN_S if unsent == 0 else 0.01, self._step)
                return
            received = _bytes_received(self.sock)
            if received - self.received_at_answer > LINGER_BYTES:
                self.transport.abort()
                self.sock.close()
                return
            # Poll fast while the client sends (so it cannot get far past the limit), slowly
            # while it does not (it is reading the answer, or idle until the timeout).
            self.poll = _POLL_MIN_S if received > self.last_received else min(self.poll * 2, _POLL_MAX_S)
            self.last_received = received
            self.loop.call_later(self.poll, self._step)
        except OSError:  # the peer reset or closed it meanwhile: nothing left to stop
            self.sock.close()


def _over_capacity_app(limit: int) -> Callable[..., Any]:
    body = json.dumps(
        {"error": "over_capacity", "reason": f"the server has {limit} connections open, its limit; retry later"}
    ).encode()

    async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", b"1"),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


class HeadTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size cap for each request head, and
    a connection cap.

    Where a head is: the parser calls `on_message_begin` at its first byte and
    `on_headers_complete` at its end. The deadline runs from the moment the connection waits
    for a head (made, or its last response finished with no pipelined request queued) until
    `on_headers_complete`. The size counts what the parser was fed while a head was open (the
    whole chunk that opened it, so at most one read's worth more than the head itself).
    """

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = config.limits if isinstance(config, EdgeConfig) else EdgeLimits()
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_open = False  # between on_message_begin and on_headers_complete
        self._head_bytes = 0
        self._lost = False  # connection_lost was called
        self._requests = 0  # this connection's share of _in_progress

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            # This connection's requests get a 503 and it is closed after the answer; the
            # deadline below still applies to it.
            self.app = cast(Any, _over_capacity_app(self.limits.max_connections))
            log_event(log, "over_capacity", logging.WARNING, client=self._peer(), limit=self.limits.max_connections)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head_open and self.parser is not None and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                msg = "Invalid HTTP request received."
                log_event(log, "head_too_large", client=self._peer(), limit_bytes=MAX_HEAD_BYTES)
                self.send_400_response(msg)
                close_once_answered(self.transport, self.loop, self.limits.header_timeout, self._is_lost)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_open = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        global _in_progress
        _in_progress += 1
        self._requests += 1
        self._head_open = False
        self._cancel_head_timer()
        super().on_headers_complete()
        if self.cycle is not None and not isinstance(self.cycle.transport, HeadWithBody):
            self.cycle.transport = cast(asyncio.Transport, HeadWithBody(self.transport))

    def on_response_complete(self) -> None:
        global _in_progress
        if self._requests > 0:
            self._requests -= 1
            _in_progress -= 1
        if self.cycle is not None and isinstance(self.cycle.transport, HeadWithBody):
            # A response with no body write at all (HEAD: uvicorn writes no body) still sends
            # its head, now that it is complete.
            self.cycle.transport.flush()
        if self.transport.is_closing():
            # The answer closed the connection (`Connection: close`, e.g. after a 413 whose body
            # was not read): stop taking in what the client still sends.
            close_once_answered(self.transport, self.loop, self.limits.header_timeout, self._is_lost)
        queued = bool(self.pipeline)  # a whole head already parsed, started by the call below
        super().on_response_complete()
        # Keep-alive: the next head is due within the same deadline, counted from now. (uvicorn's
        # keep-alive timer alone stops at the first byte of the next request.)
        if not queued and not self.transport.is_closing():
            self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        global _in_progress
        _in_progress -= self._requests
        self._requests = 0
        self._lost = True
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _is_lost(self) -> bool:
        return self._lost

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_deadline_passed)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_deadline_passed(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        log_event(log, "header_timeout", client=self._peer(), timeout_seconds=self.limits.header_timeout)
        self.transport.close()

    def _peer(self) -> str | None:
        return f"{self.client[0]}:{self.client[1]}" if self.client else None
