"""Steady mTLS load on the lab's services, with every request written down as evidence.

Locust drives the load; its own statistics are a convenience, not the evidence. Each request
is written to a JSON Lines file twice: an `invoke` line before it starts and a `complete` line
with its outcome, so a request whose worker died, or that never ended, is still visible (an
invoke without a complete) and counts as failed. The lab (zt/lab/load.py) reads these files
and turns them into history operations; its checkers decide.

What the users do (weights in the classes):
- FreshHello:  GET /hello on service-a or service-b, one new mTLS connection per request;
- KeepAlive:   GET /hello over one long-lived keep-alive connection per service, replaced
               after --zt-keepalive-seconds, so connections opened before a rotation keep
               being used after it;
- CallPeer:    GET /call?target=<peer>/hello on one service, which calls the other (a->b, b->a).

Every connection presents the lab client identity (--zt-cert chain.pem, --zt-key key.pem),
trusts exactly --zt-bundle (no system store, no host name check: SPIFFE identities are URI
SANs) and checks the server's SPIFFE ID against the one the targets file names. The serial
recorded for a request is the one in the peer certificate of that TLS socket; for /call the
body adds both hops' serials (the caller's as the callee saw it, the callee's as the caller saw
it and as it reports itself).

Run headless, e.g. (the lab does this: zt.lab.load.LoadRun):

    locust -f load/locustfile.py --headless -u 8 -r 4 -t 120s --stop-timeout 20 \
        --zt-targets targets.json --zt-cert chain.pem --zt-key key.pem --zt-bundle bundle.pem \
        --zt-out requests/

`--processes N` forks N workers on this machine; for more machines see docs/load.md. Each
process writes its own file, requests-<host>-<pid>.jsonl, in --zt-out on its own machine.
This file needs only locust and cryptography: a worker machine needs no zt checkout.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import random
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import gevent
from cryptography import x509
from locust import User, constant, events, task
from locust.env import Environment

# TLS alerts and errors as short classes (the same names zt.lab.mtls_client uses).
_SSL_CLASSES = {
    "CERTIFICATE_REQUIRED": "no_client_cert",
    "HANDSHAKE_FAILURE": "handshake_failure",
    "UNKNOWN_CA": "untrusted",
    "BAD_CERTIFICATE": "bad_certificate",
    "CERTIFICATE_UNKNOWN": "certificate_unknown",
    "CERTIFICATE_REVOKED": "revoked",
    "CERTIFICATE_EXPIRED": "expired",
    "CERTIFICATE_VERIFY_FAILED": "server_untrusted",
}


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--zt-targets", required=True, help="JSON file: the services, their URLs and SPIFFE IDs")
    parser.add_argument("--zt-cert", required=True, help="the client identity's chain.pem (leaf + intermediate)")
    parser.add_argument("--zt-key", required=True, help="the client identity's key.pem")
    parser.add_argument("--zt-bundle", required=True, help="the trust bundle: the only roots servers may chain to")
    parser.add_argument("--zt-out", required=True, help="directory for requests-<host>-<pid>.jsonl")
    parser.add_argument("--zt-timeout", type=float, default=10.0, help="per-request socket timeout, seconds")
    parser.add_argument("--zt-rate", type=float, default=2.0, help="requests per second per user")
    parser.add_argument("--zt-keepalive-seconds", type=float, default=30.0, help="a keep-alive connection's life")


class Journal:
    """One JSON Lines file per process, flushed per line: what a crash leaves is readable."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self._lock = threading.Lock()
        self._file: Any = None
        self._pid = -1
        self._ids = itertools.count(1)

    def _ensure(self) -> Any:
        if self._file is None or self._pid != os.getpid():  # --processes forks after init
            self._pid = os.getpid()
            self._ids = itertools.count(1)
            self.out_dir.mkdir(parents=True, exist_ok=True)
            path = self.out_dir / f"requests-{socket.gethostname()}-{self._pid}.jsonl"
            self._file = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
        return self._file

    def write(self, doc: dict[str, Any]) -> None:
        with self._lock:
            self._ensure().write(json.dumps(doc, separators=(",", ":")) + "\n")

    def new_id(self) -> str:
        with self._lock:
            self._ensure()
            return f"{socket.gethostname()}-{self._pid}-{next(self._ids)}"


class Settings:
    """What every user shares in one process: the TLS context, the targets, the journal."""

    def __init__(self, opts: Any) -> None:
        doc = json.loads(Path(opts.zt_targets).read_text())
        self.services: dict[str, dict[str, str]] = doc["services"]
        self.calls: list[tuple[str, str]] = [(str(c[0]), str(c[1])) for c in doc["calls"]]
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False  # the identity is the URI SAN, checked below
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=opts.zt_bundle)
        ctx.load_cert_chain(opts.zt_cert, opts.zt_key)
        self.ctx = ctx
        self.timeout = float(opts.zt_timeout)
        self.rate = float(opts.zt_rate)
        self.keepalive_seconds = float(opts.zt_keepalive_seconds)
        self.journal = Journal(Path(opts.zt_out))
        self.conn_ids = itertools.count(1)


_settings: Settings | None = None
# Set when the test stops (run time over): users finish the request in flight, then leave.
_stopping = False


@events.init.add_listener
def _init(environment: Environment, **_: Any) -> None:
    global _settings
    if environment.parsed_options is not None:
        _settings = Settings(environment.parsed_options)


@events.test_stopping.add_listener
def _on_stopping(**_: Any) -> None:
    global _stopping
    _stopping = True


def settings() -> Settings:
    assert _settings is not None, "the locustfile's options were not parsed"
    return _settings


def _peer(sock: ssl.SSLSocket) -> tuple[str | None, str | None]:
    """(SPIFFE ID, serial as lowercase hex) of the certificate this socket's server presented."""
    der = sock.getpeercert(binary_form=True)
    if not der:
        return None, None
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    return (uris[0] if len(uris) == 1 else None), format(cert.serial_number, "x")


def _error_class(e: BaseException) -> str:
    if isinstance(e, ssl.SSLError):
        text = f"{e.reason or ''} {e}".upper()
        return next((name for key, name in _SSL_CLASSES.items() if key in text), "tls_error")
    if isinstance(e, (TimeoutError, socket.timeout)):
        return "timeout"
    if isinstance(e, ConnectionRefusedError):
        return "connect"
    if isinstance(e, (ConnectionError, http.client.HTTPException, OSError)):
        return "protocol"
    return type(e).__name__


class PeerMismatch(Exception):
    """The server's certificate does not name the SPIFFE ID we meant to reach."""


class Connection:
    """One mTLS connection to one service, with the identity its server presented."""

    def __init__(self, s: Settings, service: str) -> None:
        target = s.services[service]
        self.service = service
        self.id = f"c{os.getpid()}-{next(s.conn_ids)}"
        self.used = 0
        self.opened = time.time()
        host, _, port = target["url"].removeprefix("https://").rpartition(":")
        self.http = http.client.HTTPSConnection(host, int(port), context=s.ctx, timeout=s.timeout)
        self.host = f"{host}:{port}"
        self.http.connect()
        self.handshake_at = time.time()
        assert isinstance(self.http.sock, ssl.SSLSocket)
        self.spiffe_id, self.serial = _peer(self.http.sock)
        if self.spiffe_id != target["spiffe_id"]:
            self.close()
            raise PeerMismatch(f"expected {target['spiffe_id']}, server presented {self.spiffe_id}")

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        self.used += 1
        self.http.request("GET", path, headers={"Host": self.host})
        r = self.http.getresponse()
        raw = r.read()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"_raw": raw[:200].decode(errors="replace")}
        return r.status, body if isinstance(body, dict) else {"_json": body}

    def close(self) -> None:
        self.http.close()


class ZtUser(User):
    """A user whose every request goes through `request()`: invoke line, request, complete line.

    Pacing is ours, not locust's `wait_time`: locust stops a user that is waiting by killing
    its greenlet, and a kill aimed at a user that was waiting can land after it woke up, in
    the middle of its next request (seen here: requests cut off at the end of a run). So each
    user runs one task that loops at `--zt-rate` requests per second and sleeps with
    gevent.sleep while locust considers it running; at the end (test_stopping) it finishes the
    request in flight and leaves, and --stop-timeout (longer than --zt-timeout) waits for it.
    """

    abstract = True
    wait_time = constant(0)

    def one(self) -> None:
        """One request (or, for /call, one round trip through two services)."""
        raise NotImplementedError

    @task
    def paced(self) -> None:
        interval = 1.0 / max(settings().rate, 0.01)
        due = time.monotonic() + random.random() * interval  # users out of step with each other
        while not _stopping:
            delay = due - time.monotonic()
            if delay > 0:
                gevent.sleep(min(delay, 0.25))
                continue
            self.one()
            due = max(due + interval, time.monotonic() - interval)  # a late user does not burst

    def request(
        self, kind: str, service: str, path: str, conn: Connection | None, extra: dict[str, Any] | None = None
    ) -> Connection | None:
        """One GET on `conn` (or on a new connection when None); returns the connection if it is
        still usable for keep-alive. Exactly one complete line for every invoke line, whatever
        happens, including an interrupted greenlet (BaseException)."""
        s = settings()
        rid = s.journal.new_id()
        start = time.time()
        s.journal.write({"ev": "invoke", "id": rid, "t": start, "kind": kind, "target": service, "path": path})
        doc: dict[str, Any] = {"ev": "complete", "id": rid, "kind": kind, "target": service, "path": path}
        doc.update(extra or {})
        status: int | None = None
        body: dict[str, Any] = {}
        error: str | None = None
        detail = ""
        new = conn is None
        try:
            if conn is None:
                conn = Connection(s, service)
                doc["handshake_at"] = conn.handshake_at
            doc.update(conn_id=conn.id, new_conn=new, serial=conn.serial, peer_spiffe_id=conn.spiffe_id)
            doc["conn_opened"] = conn.opened
            doc["conn_requests"] = conn.used + 1
            status, body = conn.get(path)
        except PeerMismatch as e:
            error, detail, conn = "peer_mismatch", str(e), None
        except BaseException as e:  # every outcome is written; an interruption is then re-raised
            error, detail = _error_class(e), f"{type(e).__name__}: {e}"[:300]
            if conn is not None:
                conn.close()
            conn = None
            if not isinstance(e, Exception):  # GreenletExit, KeyboardInterrupt: written, then on its way
                self._complete(doc, start, status, body, "interrupted", detail)
                raise
        self._complete(doc, start, status, body, error, detail)
        return conn

    def _complete(
        self,
        doc: dict[str, Any],
        start: float,
        status: int | None,
        body: dict[str, Any],
        error: str | None,
        detail: str,
    ) -> None:
        end = time.time()
        doc.update(start=start, end=end, status=status, error=error, detail=detail)
        if doc["kind"] == "call":
            response = body.get("response") if isinstance(body.get("response"), dict) else {}
            assert isinstance(response, dict)
            doc["hops"] = {
                "upstream_status": body.get("status"),
                "callee_peer_id": body.get("peer"),
                "callee_serial_seen_by_caller": body.get("peer_serial"),
                "callee_own_serial": response.get("serial"),
                "caller_serial_seen_by_callee": response.get("caller_serial"),
                "caller_id_seen_by_callee": response.get("caller"),
            }
            if status != 200:
                doc["body"] = body
        elif status != 200 and body:
            doc["body"] = body
        settings().journal.write(doc)
        failed = error is not None or status != 200
        self.environment.events.request.fire(
            request_type="GET",
            name=f"{doc['kind']} {doc['target']}{doc['path'].split('?')[0]}",
            response_time=(end - start) * 1000,
            response_length=0,
            exception=Exception(error or f"status {status}") if failed else None,
            context={},
        )


class FreshHello(ZtUser):
    """/hello over a new connection each time: every request sees the serial served now."""

    weight = 4

    def one(self) -> None:
        service = random.choice(sorted(settings().services))
        conn = self.request("fresh", service, "/hello", None)
        if conn is not None:
            conn.close()


class KeepAlive(ZtUser):
    """/hello over long-lived connections, one per service, replaced after a while."""

    weight = 2

    def on_start(self) -> None:
        self.conns: dict[str, Connection | None] = {}
        self.turn = itertools.cycle(sorted(settings().services))

    def one(self) -> None:
        s = settings()
        service = next(self.turn)
        conn = self.conns.get(service)
        # Spread the replacements, so that at any moment some connection predates a rotation.
        life = s.keepalive_seconds * (0.75 + 0.5 * random.random())
        if conn is not None and time.time() - conn.opened > life:
            conn.close()
            conn = None
        self.conns[service] = self.request("keepalive", service, "/hello", conn)

    def on_stop(self) -> None:
        for conn in self.conns.values():
            if conn is not None:
                conn.close()


class CallPeer(ZtUser):
    """/call: one service calls the other over its own mTLS client connection."""

    weight = 2

    def one(self) -> None:
        s = settings()
        caller, callee = random.choice(s.calls)
        mesh = s.services[callee]["mesh_url"]
        path = f"/call?target={quote(mesh + '/hello', safe='')}"
        conn = self.request("call", caller, path, None, {"callee": callee})
        if conn is not None:
            conn.close()
