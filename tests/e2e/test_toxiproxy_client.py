"""The typed toxiproxy client against the real, pinned toxiproxy server (no mocks): a proxy in
front of a TCP echo server on loopback, and each kind of fault the chaos plans use, measured
on the wire and healed."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from zt.lab import toxiproxy
from zt.lab.ports import free_port
from zt.lab.toxiproxy import Toxic, Toxiproxy, ToxiproxyError


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[Toxiproxy, int]]:
    if not toxiproxy.SERVER.exists():
        pytest.fail(f"{toxiproxy.SERVER} is needed (scripts/install-deps.sh)", pytrace=False)
    echo = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    echo.daemon_threads = True
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    proc, client = toxiproxy.start_server(free_port(), tmp_path / "toxiproxy.log", 1, tmp_path)
    try:
        listen = free_port()
        client.create_proxy("echo", f"127.0.0.1:{listen}", f"127.0.0.1:{echo.server_address[1]}")
        yield client, listen
    finally:
        client.close()
        proc.stop()
        echo.shutdown()
        echo.server_close()


def _round_trip(port: int, timeout: float = 5.0) -> float:
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"ping")
        assert s.recv(4) == b"ping"
    return time.perf_counter() - t0


def test_toxiproxy_latency_toxic_delays_and_its_removal_heals(proxied: tuple[Toxiproxy, int]) -> None:
    client, port = proxied
    assert client.version()
    before = _round_trip(port)
    client.add_toxic("echo", Toxic("slow", "latency", "downstream", 1.0, {"latency": 300, "jitter": 0}))
    assert [t["name"] for t in client.toxics("echo")] == ["slow"]
    slow = _round_trip(port)
    assert slow >= 0.3 > before
    client.remove_toxic("echo", "slow")
    assert client.toxics("echo") == []
    assert _round_trip(port) < 0.3


def test_toxiproxy_down_refuses_connections_until_enabled(proxied: tuple[Toxiproxy, int]) -> None:
    client, port = proxied
    client.set_enabled("echo", False)
    assert client.proxies()["echo"]["enabled"] is False
    with pytest.raises(ConnectionRefusedError):
        _round_trip(port)
    client.set_enabled("echo", True)
    _round_trip(port)


def test_toxiproxy_reset_peer_resets_and_reset_clears_everything(proxied: tuple[Toxiproxy, int]) -> None:
    client, port = proxied
    client.add_toxic("echo", Toxic("rst", "reset_peer", "downstream", 1.0, {"timeout": 0}))
    with pytest.raises((ConnectionResetError, AssertionError, BrokenPipeError)):
        _round_trip(port)
    client.set_enabled("echo", False)
    client.reset()
    assert client.proxies()["echo"]["enabled"] is True and client.toxics("echo") == []
    _round_trip(port)


def test_toxiproxy_refusal_names_what_the_server_said(proxied: tuple[Toxiproxy, int]) -> None:
    client, _ = proxied
    with pytest.raises(ToxiproxyError, match=r"HTTP 40\d") as e:
        client.add_toxic("echo", Toxic("bad", "no-such-toxic", "downstream", 1.0, {}))
    assert "/proxies/echo/toxics" in str(e.value)
    with pytest.raises(ToxiproxyError, match="HTTP 404"):
        client.remove_toxic("no-such-proxy", "x")
