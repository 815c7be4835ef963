"""zt-crl's long-poll (RFC 7240 `Prefer: wait`) against the real process: a held conditional GET
ends with the new CRL as soon as one is published, or with 304 when the wait passes; the wait is
capped, the header timeout does not cut it, a client that leaves is not waited for, and a stop
is not held up by waiters."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from tests.conftest import CaDir, CrlServer, start_crl
from tests.e2e.test_crl_publisher import crl_number, crl_without_number, publish
from zt.crl import main as crl_main
from zt.crl.longpoll import requested_wait
from zt.lab import process


@dataclass
class Outcome:
    response: httpx.Response
    seconds: float


def held_get(url: str, etag: str, prefer: str, path: str = "/crl", timeout: float = 30) -> Outcome:
    start = time.monotonic()
    r = httpx.get(url + path, headers={"If-None-Match": etag, "Prefer": prefer}, timeout=timeout)
    return Outcome(r, time.monotonic() - start)


class Waiter:
    """A held request in a thread: start it, do something, then `result()`."""

    def __init__(self, url: str, etag: str, prefer: str, path: str = "/crl") -> None:
        self._out: list[Outcome] = []
        self._thread = threading.Thread(target=lambda: self._out.append(held_get(url, etag, prefer, path)))
        self._thread.start()

    def result(self, timeout: float = 30) -> Outcome:
        self._thread.join(timeout)
        assert self._out, "the held request did not end"
        return self._out[0]


def metric(url: str, name: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def wait_for_waiters(url: str, count: int) -> None:
    process.wait_until(f"{count} held request(s)", lambda: metric(url, "zt_crl_longpoll_waiters") == count, timeout=10)


def etag_of(srv: CrlServer) -> str:
    return httpx.get(srv.url + "/crl").headers["etag"]


@pytest.fixture
def short_wait_crl(ca: CaDir, tmp_path: Path) -> Iterator[CrlServer]:
    """A publisher that holds at most 2 s and closes a connection whose head takes over 1 s."""
    srv = start_crl(ca, tmp_path / "logs", "--max-wait", "2", "--header-timeout", "1s")
    yield srv
    srv.proc.stop()


@pytest.mark.parametrize("path", ["/crl", "/crl.pem"])
def test_held_request_gets_the_new_crl_as_soon_as_it_is_published(
    ca: CaDir, crl_server: CrlServer, tmp_path: Path, path: str
) -> None:
    before = httpx.get(crl_server.url + path)
    ca.register("svc")
    serial = ca.ztca("issue", "svc", "--out", str(tmp_path / "o"), "--json").json()["serial"]
    waiters = [Waiter(crl_server.url, before.headers["etag"], "wait=20", path) for _ in range(3)]
    wait_for_waiters(crl_server.url, 3)
    assert ca.ztca("revoke", serial).code == 0
    published = time.monotonic()
    for w in waiters:
        out = w.result()
        assert out.response.status_code == 200
        assert out.response.headers["preference-applied"] == "wait=20"
        assert out.response.headers["etag"] != before.headers["etag"]
        crl = (
            x509.load_der_x509_crl(out.response.content)
            if path == "/crl"
            else x509.load_pem_x509_crl(out.response.content)
        )
        assert crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None
    ended = time.monotonic() - published
    assert ended < 10, f"held requests ended {ended:.1f} s after the new CRL, not at once"
    assert metric(crl_server.url, "zt_crl_longpoll_waiters") == 0
    assert metric(crl_server.url, 'zt_crl_longpoll_total{outcome="changed"}') == 3


def test_held_request_ends_with_304_when_the_wait_passes_and_the_header_timeout_does_not_cut_it(
    short_wait_crl: CrlServer,
) -> None:
    etag = etag_of(short_wait_crl)
    out = held_get(short_wait_crl.url, etag, "wait=1")
    assert out.response.status_code == 304 and out.response.content == b""
    assert out.response.headers["preference-applied"] == "wait=1"
    assert out.response.headers["etag"] == etag
    assert out.seconds >= 1
    # A wait of 2 s on a publisher whose header timeout is 1 s: held to the end, not cut.
    out = held_get(short_wait_crl.url, etag, "wait=2")
    assert out.response.status_code == 304 and out.seconds >= 2
    assert metric(short_wait_crl.url, 'zt_crl_longpoll_total{outcome="timeout"}') == 2


def test_wait_is_capped_by_max_wait(short_wait_crl: CrlServer) -> None:
    out = held_get(short_wait_crl.url, etag_of(short_wait_crl), "respond-async, wait=600")
    assert out.response.status_code == 304
    assert out.response.headers["preference-applied"] == "wait=2"
    assert 2 <= out.seconds < 10


@pytest.mark.parametrize(
    "if_none_match, prefer, status",
    [
        ("current", None, 304),  # no Prefer: the plain conditional GET, answered at once
        ("current", "wait=0", 304),
        ("current", "wait=soon", 304),  # a wait that cannot be understood is ignored (RFC 7240 2)
        ("*", "wait=20", 304),  # any CRL matches `*`: nothing to wait for
        ('"an-older-etag"', "wait=20", 200),  # the client is behind: the current CRL at once
    ],
)
def test_requests_that_are_not_held_are_answered_at_once(
    crl_server: CrlServer, if_none_match: str, prefer: str | None, status: int
) -> None:
    etag = etag_of(crl_server)
    headers = {"If-None-Match": etag if if_none_match == "current" else if_none_match}
    if prefer is not None:
        headers["Prefer"] = prefer
    start = time.monotonic()
    r = httpx.get(crl_server.url + "/crl", headers=headers, timeout=30)
    assert r.status_code == status
    assert time.monotonic() - start < 5
    assert "preference-applied" not in r.headers
    assert metric(crl_server.url, 'zt_crl_longpoll_total{outcome="timeout"}') == 0


def test_refused_crl_file_does_not_end_the_wait(ca: CaDir, short_wait_crl: CrlServer) -> None:
    etag = etag_of(short_wait_crl)
    waiter = Waiter(short_wait_crl.url, etag, "wait=2")
    wait_for_waiters(short_wait_crl.url, 1)
    publish(ca, crl_without_number(ca))  # refused: the last good CRL is still the one served
    out = waiter.result()
    assert out.response.status_code == 304 and out.response.headers["etag"] == etag


def test_client_that_leaves_is_not_waited_for(crl_server: CrlServer) -> None:
    etag = etag_of(crl_server)
    host, port = crl_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(f"GET /crl HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\nPrefer: wait=60\r\n\r\n".encode())
        wait_for_waiters(crl_server.url, 1)
    wait_for_waiters(crl_server.url, 0)
    assert metric(crl_server.url, 'zt_crl_longpoll_total{outcome="disconnected"}') == 1


def test_stop_is_not_held_up_by_waiters(ca: CaDir, tmp_path: Path) -> None:
    srv = start_crl(ca, tmp_path / "logs")
    try:
        waiter = Waiter(srv.url, etag_of(srv), "wait=60")
        wait_for_waiters(srv.url, 1)
        start = time.monotonic()
        srv.proc.stop()
        stopped = time.monotonic() - start
        out = waiter.result()
    finally:
        srv.proc.stop()
    assert out.response.status_code == 304
    assert stopped < 2.5, f"stopping took {stopped:.1f} s with a request held"


def test_new_crl_after_a_wait_ended_is_served_with_a_higher_number(ca: CaDir, crl_server: CrlServer) -> None:
    first = httpx.get(crl_server.url + "/crl")
    waiter = Waiter(crl_server.url, first.headers["etag"], "wait=20")
    wait_for_waiters(crl_server.url, 1)
    ca.register("svc")
    ca.ztca("revoke", "--service", "svc")
    out = waiter.result()
    assert out.response.status_code == 200
    assert crl_number(x509.load_der_x509_crl(out.response.content)) > crl_number(x509.load_der_x509_crl(first.content))


@pytest.mark.parametrize(
    "headers, wait",
    [
        (["wait=10"], 10),
        (['WAIT="7"'], 7),
        (["respond-async, wait=3;x=y"], 3),
        (["handling=lenient", "wait=4"], 4),
        (["wait=5, wait=9"], 5),  # RFC 7240 2: only the first instance counts
        (["wait=-1"], None),
        (["wait=1.5"], None),
        (["wait"], None),
        (["return=minimal"], None),
        ([], None),
    ],
)
def test_requested_wait_reads_rfc7240_preferences(headers: list[str], wait: int | None) -> None:
    assert requested_wait(headers) == wait


def test_waiters_are_woken_when_healthz_loaded_the_new_crl_first(ca: CaDir, tmp_path: Path) -> None:
    """/healthz re-reads the file in its own thread; the watcher then sees nothing changed on
    disk, yet the waiters have not been given that CRL: they must still get it, at the next
    tick (2 s here, so that /healthz surely reads the file first), not at the end of the wait."""
    from tests.e2e.test_crl_longpoll_scale import next_crl

    srv = start_crl(ca, tmp_path / "logs", "--watch-interval", "2s")
    try:
        waiter = Waiter(srv.url, etag_of(srv), "wait=10")
        wait_for_waiters(srv.url, 1)
        new = next_crl(ca, 0x77)
        publish(ca, new)
        assert httpx.get(srv.url + "/healthz").json()["crl_number"] == crl_number(x509.load_der_x509_crl(new))
        out = waiter.result()
    finally:
        srv.proc.stop()
    assert out.response.status_code == 200 and out.response.content == new
    assert out.seconds < 9


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--max-wait", "-1"], "--max-wait must be 0 or more"),
        (["--watch-interval", "0s"], "--watch-interval must be more than 0 and at most 60s"),
        (["--watch-interval", "2m"], "--watch-interval must be more than 0 and at most 60s"),
    ],
)
def test_bad_long_poll_flags_are_a_usage_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert crl_main.main(["--ca-dir", "/nonexistent", *argv]) == 2
    assert message in capsys.readouterr().err
