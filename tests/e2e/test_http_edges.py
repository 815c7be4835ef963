"""Attacks on the connection level of the real zt-ra (TLS) and zt-crl (plain HTTP) processes:
slowloris request heads, half-done TLS handshakes, more connections than the cap.

Timings here are bounds with a wide margin (the machine is shared), never latencies.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import CaDir, CrlServer, RaServer, start_crl, start_ra
from zt.httpedge import MAX_HEAD_BYTES

HEADER_TIMEOUT = 2.0
MARGIN = 8.0  # a loaded 2-core machine; without the fix the server waits 60 s or forever
PARTIAL_HEAD = b"POST /v1/issue HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Slow: "


def host_port(url: str) -> tuple[str, int]:
    u = httpx.URL(url)
    assert u.host and u.port
    return u.host, u.port


def tcp_connect(url: str) -> socket.socket:
    return socket.create_connection(host_port(url), timeout=10)


def tls_connect(ra: RaServer) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(ra.ca.paths.bundle))
    raw = tcp_connect(ra.url)
    try:
        return ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    except BaseException:
        raw.close()
        raise


def seconds_until_closed(sock: socket.socket, opened: float, limit: float) -> float:
    """Read until the server closes the connection; the time from `opened`, or fail at `limit`."""
    while True:
        left = opened + limit - time.monotonic()
        if left <= 0:
            pytest.fail(f"the server kept the connection open for more than {limit:.0f} s")
        sock.settimeout(left)
        try:
            data = sock.recv(4096)
        except TimeoutError:
            continue
        except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError, BrokenPipeError):
            return time.monotonic() - opened
        if not data:
            return time.monotonic() - opened
        pytest.fail(f"the server answered a half-sent head instead of closing: {data[:200]!r}")


def read_response(sock: socket.socket) -> bytes:
    """One whole HTTP/1.1 response with a Content-Length, read off a raw socket."""
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


@pytest.fixture
def slow_ra(ca: CaDir, tmp_path: Path) -> Iterator[RaServer]:
    srv = start_ra(ca, tmp_path / "logs", "--header-timeout", f"{HEADER_TIMEOUT}s")
    yield srv
    srv.proc.stop()


@pytest.fixture
def slow_crl(ca: CaDir, tmp_path: Path) -> Iterator[CrlServer]:
    srv = start_crl(ca, tmp_path / "logs", "--header-timeout", f"{HEADER_TIMEOUT}s")
    yield srv
    srv.proc.stop()


def test_ra_closes_half_sent_heads_and_keeps_answering(slow_ra: RaServer) -> None:
    with contextlib.ExitStack() as stack:
        opened: list[tuple[ssl.SSLSocket, float]] = []
        for _ in range(10):
            s = stack.enter_context(tls_connect(slow_ra))
            s.sendall(PARTIAL_HEAD)
            opened.append((s, time.monotonic()))
        with slow_ra.client() as c:  # a legitimate client while the ten hang
            assert c.get("/v1/status").json()["status"] == "ok"
        took = [seconds_until_closed(s, t0, HEADER_TIMEOUT + MARGIN) for s, t0 in opened]
    assert min(took) >= HEADER_TIMEOUT * 0.9, took  # closed by the deadline, not by something else
    print(f"half-sent heads closed after {min(took):.2f}..{max(took):.2f} s (timeout {HEADER_TIMEOUT} s)")


def test_ra_closes_a_head_dripped_byte_by_byte(slow_ra: RaServer) -> None:
    """Slowloris proper: data keeps arriving, but the head never completes."""
    with tls_connect(slow_ra) as s:
        t0 = time.monotonic()
        closed_after = None
        for byte in PARTIAL_HEAD * 4:
            try:
                s.sendall(bytes([byte]))
            except (ssl.SSLError, OSError):
                closed_after = time.monotonic() - t0
                break
            if time.monotonic() - t0 > HEADER_TIMEOUT + MARGIN:
                break
            time.sleep(0.2)
        if closed_after is None:
            closed_after = seconds_until_closed(s, t0, HEADER_TIMEOUT + MARGIN)
    assert closed_after <= HEADER_TIMEOUT + MARGIN


@pytest.mark.parametrize("first_bytes", [b"", b"\x16\x03\x01\x02\x00\x01"], ids=["silent", "partial-client-hello"])
def test_ra_closes_half_done_tls_handshakes(slow_ra: RaServer, first_bytes: bytes) -> None:
    with tcp_connect(slow_ra.url) as s:
        t0 = time.monotonic()
        s.sendall(first_bytes)
        took = seconds_until_closed(s, t0, HEADER_TIMEOUT + MARGIN)
    print(f"half-done TLS handshake closed after {took:.2f} s")


def test_ra_keep_alive_connection_gets_the_same_deadline_for_its_next_head(slow_ra: RaServer) -> None:
    with tls_connect(slow_ra) as s:
        s.sendall(b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = read_response(s)
        assert first.startswith(b"HTTP/1.1 200"), first[:100]
        t0 = time.monotonic()
        s.sendall(b"GET /v1/status HTTP/1.1\r\n")  # the next head, never finished
        # uvicorn's own keep-alive timer (5 s) stops at the first byte of the next request
        seconds_until_closed(s, t0, HEADER_TIMEOUT + MARGIN)


def test_ra_refuses_a_head_over_the_size_cap_and_keeps_answering(slow_ra: RaServer) -> None:
    """A head larger than MAX_HEAD_BYTES (sent fast, well within the deadline) is a 400 and the
    connection is closed: the C parser buffers headers without a limit of its own. A head just
    under the cap is served."""
    with tls_connect(slow_ra) as s:
        t0 = time.monotonic()
        s.sendall(b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for _ in range(MAX_HEAD_BYTES // 1000 + 2):
            s.sendall(b"X-Pad: " + b"a" * 1000 + b"\r\n")
        s.settimeout(HEADER_TIMEOUT)
        answer = s.recv(4096)
        assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
        seconds_until_closed_after_answer(s, t0, MARGIN)
    with tls_connect(slow_ra) as s:
        pad = b"X-Pad: " + b"a" * (MAX_HEAD_BYTES // 2) + b"\r\n"
        s.sendall(b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n" + pad + b"\r\n")
        assert read_response(s).startswith(b"HTTP/1.1 200")


def seconds_until_closed_after_answer(sock: socket.socket, opened: float, limit: float) -> None:
    """Drain what follows an answer until the server closes, or fail at `limit`."""
    while time.monotonic() - opened < limit:
        sock.settimeout(max(0.1, opened + limit - time.monotonic()))
        try:
            if not sock.recv(4096):
                return
        except TimeoutError:
            continue
        except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError, BrokenPipeError):
            return
    pytest.fail(f"the server kept the connection open for more than {limit:.0f} s after its 400")


def test_ra_over_max_connections_is_503_json_until_one_closes(ca: CaDir, tmp_path: Path) -> None:
    ra = start_ra(ca, tmp_path / "logs", "--max-connections", "3", "--header-timeout", "60s")
    try:
        with contextlib.ExitStack() as stack:
            held = [stack.enter_context(tls_connect(ra)) for _ in range(3)]
            with ra.client() as c:
                r = c.get("/v1/status")
            assert r.status_code == 503, r.text
            assert r.headers["content-type"] == "application/json"
            assert r.json()["error"] == "over_capacity" and "3 connections" in r.json()["reason"]
            assert r.headers["connection"] == "close" and r.headers["retry-after"] == "1"
            held[0].close()

            def answers() -> bool:
                with ra.client() as c:
                    return c.get("/v1/status").status_code == 200

            deadline = time.monotonic() + 10
            while not answers():
                assert time.monotonic() < deadline, "still over capacity 10 s after a connection closed"
                time.sleep(0.2)
    finally:
        ra.proc.stop()


def test_crl_publisher_closes_half_sent_heads_and_keeps_serving(slow_crl: CrlServer) -> None:
    with contextlib.ExitStack() as stack:
        opened: list[tuple[socket.socket, float]] = []
        for _ in range(10):
            s = stack.enter_context(tcp_connect(slow_crl.url))
            s.sendall(b"GET /crl HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            opened.append((s, time.monotonic()))
        r = httpx.get(slow_crl.url + "/crl", timeout=5)
        assert r.status_code == 200 and r.headers["content-type"] == "application/pkix-crl"
        took = [seconds_until_closed(s, t0, HEADER_TIMEOUT + MARGIN) for s, t0 in opened]
    assert min(took) >= HEADER_TIMEOUT * 0.9, took


def test_crl_publisher_over_max_connections_is_503_json(ca: CaDir, tmp_path: Path) -> None:
    crl = start_crl(ca, tmp_path / "logs", "--max-connections", "2", "--header-timeout", "60s")
    try:
        with tcp_connect(crl.url), tcp_connect(crl.url):
            r = httpx.get(crl.url + "/crl", timeout=5)
            assert r.status_code == 503
            assert r.json()["error"] == "over_capacity", r.text
    finally:
        crl.proc.stop()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--header-timeout", "0s"], "--header-timeout must be more than 0"),
        (["--max-connections", "0"], "--max-connections must be at least 1"),
    ],
)
def test_bad_edge_flags_are_a_usage_error(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    from zt.crl import main as crl_main
    from zt.ra import main as ra_main

    assert ra_main.main(["--ca-dir", "/nonexistent", *argv]) == 2
    assert message in capsys.readouterr().err
    assert crl_main.main(["--ca-dir", "/nonexistent", *argv]) == 2
    assert message in capsys.readouterr().err
