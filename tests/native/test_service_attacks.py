"""Attacks on the availability and the TLS settings of both native services (issue 9), each
performed against the real binaries (build/service-a, build/service-b) over real sockets:

- 100 slow connections (half-sent ClientHellos and silent TCP connections) held open must not
  keep a legitimate mTLS client from being answered promptly;
- a TLS 1.2 client offering only CBC suites is refused (AEAD suites only);
- client-initiated renegotiation on TLS 1.2 is refused: OpenSSL (service-a, with
  SSL_OP_NO_RENEGOTIATION) answers the renegotiating ClientHello with a no_renegotiation
  alert, the JDK (service-b, jdk.tls.rejectClientInitiatedRenegotiation) with a fatal
  handshake_failure; in both cases the second handshake never completes.

Python's ssl module cannot renegotiate, so the renegotiation probe drives `openssl s_client`
(its interactive `R` command) and reads its `-state` trace; a control run against
`openssl s_server -client_renegotiation` shows the probe does see a renegotiation that succeeds.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from tests.native.pair import KINDS, TD, Pair, running_pair
from zt.lab import mtls_client, process
from zt.lab.identity import LabIdentity
from zt.lab.ports import free_port

# Slow clients may hold their handshake this long, far past the bound a legitimate client
# must meet (so "answered promptly" cannot come from the slow ones having been timed out).
SLOW_HANDSHAKE_TIMEOUT_MS = 20_000
PROMPT_S = 5.0
# A TLS record header announcing a 512-byte handshake record that never comes.
HALF_CLIENT_HELLO = bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
CBC_ONLY = ":".join(
    [
        "ECDHE-ECDSA-AES128-SHA256",
        "ECDHE-ECDSA-AES256-SHA384",
        "ECDHE-RSA-AES128-SHA256",
        "ECDHE-RSA-AES256-SHA384",
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA",
        "ECDHE-RSA-AES128-SHA",
        "ECDHE-RSA-AES256-SHA",
        "AES128-SHA256",
        "AES128-SHA",
    ]
)
AEAD_ONLY = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305"
# In TLS 1.2 the client reads the server's Finished only once the server accepted its certificate.
HANDSHAKE_DONE = "SSL_connect:SSLv3/TLS read finished"
# How each stack refuses a client's renegotiation, as `openssl s_client -state` prints it.
RENEGOTIATION_REFUSAL = {
    "service-a": "SSL3 alert read:warning:no renegotiation",
    "service-b": "SSL3 alert read:fatal:handshake failure",
}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """Both services, one CA, one client identity; slow handshakes may last 20 s."""
    extra = ("--handshake-timeout-ms", str(SLOW_HANDSHAKE_TIMEOUT_MS))
    with running_pair(tmp_path_factory.mktemp("attacks"), expect_peer=lambda _: TD + "client", extra=extra) as p:
        yield p


@pytest.mark.parametrize("service", KINDS)
def test_slow_connections_do_not_delay_a_legitimate_client(pair: Pair, service: str) -> None:
    port = pair.services[service].tls_port
    with ExitStack() as held:
        for i in range(100):
            s = held.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
            if i % 2 == 0:
                s.sendall(HALF_CLIENT_HELLO)  # half a handshake; the other half stay silent
        time.sleep(0.5)  # let the server accept them all before the legitimate client comes
        r = pair.get(service, "/hello", pair.ids["client"])
        print(f"{service}: /hello with 100 slow connections open answered in {r.elapsed_ms:.0f} ms ({r})")
        assert r.ok and r.status == 200, r
        assert r.elapsed_ms < PROMPT_S * 1000, f"{service} took {r.elapsed_ms:.0f} ms"
        assert r.body["serial"] == pair.ids[service].serial


def _tls12(pair: Pair, ciphers: str) -> ssl.SSLContext:
    ctx = mtls_client.context(pair.ca.paths.bundle, pair.ids["client"])
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(ciphers)
    return ctx


@pytest.mark.parametrize("service", KINDS)
def test_tls12_client_offering_only_cbc_suites_is_refused(pair: Pair, service: str) -> None:
    url = pair.services[service].url + "/hello"
    before = pair.failures(service, "protocol")
    r = mtls_client.get(url, bundle=pair.ca.paths.bundle, identity=pair.ids["client"], ctx=_tls12(pair, CBC_ONLY))
    assert not r.ok, f"{service} accepted a CBC-only TLS 1.2 client: {r}"
    assert r.error == "tls_refused" and r.reason == "handshake_failure", r
    process.wait_until(
        f"{service} to count a protocol failure", lambda: pair.failures(service, "protocol") > before, timeout=5
    )
    # The twin: the same client offering AEAD suites is served over TLS 1.2.
    ok = mtls_client.get(url, bundle=pair.ca.paths.bundle, identity=pair.ids["client"], ctx=_tls12(pair, AEAD_ONLY))
    assert ok.ok and ok.status == 200 and ok.tls_version == "TLSv1.2", ok


@dataclass
class SClient:
    """`openssl s_client -tls1_2 -state` driven over stdin; its output collected as it comes."""

    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @classmethod
    def connect(cls, port: int, identity: LabIdentity, bundle: Path) -> SClient:
        openssl = shutil.which("openssl")
        assert openssl, "the openssl command line tool is needed for the renegotiation probe"
        gen = identity.generation()
        argv = [
            openssl,
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-tls1_2",
            "-state",
            # -cert sends only the leaf; -cert_chain adds the intermediate the servers need.
            "-cert",
            str(gen / "cert.pem"),
            "-cert_chain",
            str(gen / "chain.pem"),
            "-key",
            str(gen / "key.pem"),
            "-CAfile",
            str(bundle),
        ]
        popen = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        c = cls(popen)
        c.reader = threading.Thread(target=c._read, args=(popen.stdout,), daemon=True)
        c.reader.start()
        return c

    def _read(self, out: IO[str] | None) -> None:
        assert out is not None
        for line in out:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        # s_client prints the session's master key: keep it out of assertion messages and logs.
        return "\n".join(line for line in self.lines if "Master-Key" not in line)

    def wait_for(self, what: str, timeout: float = 15.0) -> bool:
        """True once `what` appears in the output; False when s_client exited or time ran out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if what in self.text:
                return True
            if self.popen.poll() is not None:
                time.sleep(0.2)  # let the reader take the last lines
                return what in self.text
            time.sleep(0.05)
        return False

    def send(self, data: str) -> None:
        assert self.popen.stdin is not None
        with suppress(BrokenPipeError):  # s_client already exited: the server ended the connection
            self.popen.stdin.write(data)
            self.popen.stdin.flush()

    def finish(self) -> str:
        """Closes stdin (s_client then closes the connection) and returns the whole output."""
        if self.popen.stdin is not None:
            with suppress(BrokenPipeError):
                self.popen.stdin.close()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)
        if self.reader is not None:
            self.reader.join(5)  # the pipe ends with the process: the reader has the last lines
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        return self.text


def renegotiate(port: int, identity: LabIdentity, bundle: Path, request: str) -> str:
    """Handshake over TLS 1.2, ask for a renegotiation (`R`), then send `request`; the output."""
    c = SClient.connect(port, identity, bundle)
    try:
        assert c.wait_for(HANDSHAKE_DONE), f"no TLS 1.2 handshake:\n{c.text}"
        c.send("R\n")
        assert c.wait_for("RENEGOTIATING"), c.text
        time.sleep(0.5)  # a separate read for the request: s_client takes `R` only alone on its line
        c.send(request)
        c.wait_for("HTTP/1.", timeout=10)
    finally:
        out = c.finish()
    return out


def _handshakes_completed(out: str) -> int:
    return out.count(HANDSHAKE_DONE)


@pytest.mark.parametrize("service", KINDS)
def test_client_initiated_renegotiation_is_refused(pair: Pair, service: str) -> None:
    out = renegotiate(
        pair.services[service].tls_port,
        pair.ids["client"],
        pair.ca.paths.bundle,
        "GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    after = out.split("RENEGOTIATING", 1)[1]
    assert "write client hello" in after, f"the probe sent no renegotiating ClientHello:\n{out}"
    assert _handshakes_completed(out) == 1, f"{service} completed a renegotiation:\n{out}"
    assert "HTTP/1.1 200" not in after, f"{service} went on serving after the renegotiation:\n{out}"
    assert RENEGOTIATION_REFUSAL[service] in after, f"{service} did not refuse with its alert:\n{out}"
    assert pair.get(service, "/hello", pair.ids["client"]).status == 200  # and it serves others as usual


def test_renegotiation_probe_sees_a_server_that_allows_it(pair: Pair, tmp_path: Path) -> None:
    """The control: against a server that allows client renegotiation the probe sees two
    completed handshakes and the answer, so the refusals above are not an artefact of the probe."""
    identity = pair.ids["service-b"]
    gen = identity.generation()
    port = free_port()
    argv = [
        "openssl",
        "s_server",
        "-accept",
        f"127.0.0.1:{port}",
        "-tls1_2",
        "-www",
        "-client_renegotiation",
        "-cert",
        str(gen / "cert.pem"),
        "-key",
        str(gen / "key.pem"),
        "-cert_chain",
        str(gen / "chain.pem"),
    ]
    server = process.start_ready(
        "s_server", argv, tmp_path / "s_server.log", "openssl s_server to listen", lambda: _accepts(port), timeout=15
    )
    try:
        out = renegotiate(port, pair.ids["client"], pair.ca.paths.bundle, "GET / HTTP/1.0\r\n\r\n")
    finally:
        server.stop()
    assert _handshakes_completed(out) == 2, out
    assert "HTTP/1.0 200 ok" in out.split("RENEGOTIATING", 1)[1], out


def _accepts(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        return True
