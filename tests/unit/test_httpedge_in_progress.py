"""zt.httpedge.requests_in_progress on a real server in this process: what the RA's group commit
reads to tell one client from several (zt.ra.group_commit)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn

from zt import httpedge
from zt.httpedge import EdgeConfig, EdgeLimits


def _until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def held_server() -> Iterator[tuple[int, threading.Event]]:
    """An edge server whose every request waits until the event is set; (port, event)."""
    release = threading.Event()

    async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return
        while not release.is_set():
            await asyncio.sleep(0.01)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(EdgeConfig(app, EdgeLimits(), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    _until(lambda: server.started, "the server to start")
    try:
        yield sock.getsockname()[1], release
    finally:
        release.set()
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_requests_in_progress_counts_requests_read_and_not_answered(held_server: tuple[int, threading.Event]) -> None:
    port, release = held_server
    assert httpedge.requests_in_progress() == 0
    clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(4)]
    try:
        for c in clients[:3]:
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        clients[3].sendall(b"GET / HTTP/1.1\r\nHo")  # a head not yet whole: not a request yet
        _until(lambda: httpedge.requests_in_progress() == 3, "three requests in progress")
        time.sleep(0.2)
        assert httpedge.requests_in_progress() == 3
        clients[0].close()  # a client gone mid-request no longer counts
        _until(lambda: httpedge.requests_in_progress() == 2, "the closed connection to be dropped")
        release.set()
        for c in clients[1:3]:
            assert c.recv(4096).startswith(b"HTTP/1.1 200")
        _until(lambda: httpedge.requests_in_progress() == 0, "every answer to complete")
    finally:
        for c in clients:
            c.close()
