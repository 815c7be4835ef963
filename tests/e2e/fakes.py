"""Hostile peers for the agent's attack tests: a real HTTP(S) server on 127.0.0.1 whose answers a
test scripts, and which records every request it received (so a test can prove a token was
never sent) and how many body bytes it managed to send (so a test can prove a client stopped
reading)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    chunks: Iterator[bytes] | None = None  # stream these (no Content-Length) instead of `body`


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Responder = Callable[[Seen], Answer]


class FakeServer:
    """A ThreadingHTTPServer in a daemon thread; TLS when `cert_file`/`key_file` are given."""

    def __init__(self, respond: Responder, cert_file: Path | None = None, key_file: Path | None = None) -> None:
        self.respond = respond
        self.seen: list[Seen] = []
        self.bytes_sent = 0
        self.aborted = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                seen = Seen(self.command, self.path, dict(self.headers.items()), self.rfile.read(n) if n else b"")
                outer.seen.append(seen)
                a = outer.respond(seen)
                self.send_response(a.status)
                for k, v in a.headers.items():
                    self.send_header(k, v)
                try:
                    if a.chunks is None:
                        if "Content-Length" not in a.headers:
                            self.send_header("Content-Length", str(len(a.body)))
                        self.end_headers()
                        self.wfile.write(a.body)
                        outer.bytes_sent += len(a.body)
                        return
                    self.send_header("Connection", "close")
                    self.end_headers()
                    for chunk in a.chunks:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        outer.bytes_sent += len(chunk)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    outer.aborted.set()
                self.close_connection = True

            do_GET = _handle
            do_POST = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if cert_file is not None and key_file is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(cert_file), str(key_file))
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="fake-server", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass(frozen=True)
class WebPkiCa:
    """A CA of the kind found in a system store, with a server certificate for 127.0.0.1."""

    root_file: Path
    cert_file: Path
    key_file: Path


def make_public_ca(d: Path) -> WebPkiCa:
    d.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Publicly Trusted Root (test)")])
    root = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    ca = WebPkiCa(d / "public-root.pem", d / "server.pem", d / "server.key")
    ca.root_file.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    ca.cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    ca.key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca
