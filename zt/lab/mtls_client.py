"""An mTLS HTTP client holding a lab identity, that reports what it saw, refusals included.

It authenticates servers as the services do each other: chain to the trust bundle, no host
name check, and (optionally) an expected SPIFFE ID. Failures are not exceptions but results
with a short `error` class and the library's `detail`, so refusals are evidence.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from zt.lab.identity import LabIdentity

# How a TLS refusal shows up in Python's ssl module, by the alert the server sent.
_ALERTS = {
    "CERTIFICATE_REQUIRED": "no_client_cert",
    "HANDSHAKE_FAILURE": "handshake_failure",
    "UNKNOWN_CA": "untrusted",
    "BAD_CERTIFICATE": "bad_certificate",
    "CERTIFICATE_UNKNOWN": "certificate_unknown",
    "CERTIFICATE_REVOKED": "revoked",
    "CERTIFICATE_EXPIRED": "expired",
    "ACCESS_DENIED": "access_denied",
    "CERTIFICATE_VERIFY_FAILED": "server_untrusted",
    "EOF OCCURRED IN VIOLATION OF PROTOCOL": "closed",  # the server hung up without an alert
}


@dataclass(frozen=True)
class Response:
    ok: bool  # a complete HTTP response arrived (any status)
    status: int | None = None
    body: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # tls_refused / connect / timeout / protocol / peer_mismatch
    reason: str | None = None  # for TLS refusals: the alert class (_ALERTS values)
    detail: str = ""
    peer_spiffe_id: str | None = None
    peer_serial: str | None = None
    tls_version: str | None = None
    elapsed_ms: float = 0.0


def _classify_ssl(e: ssl.SSLError) -> str:
    text = f"{e.reason or ''} {e}".upper()
    for key, name in _ALERTS.items():
        if key in text:
            return name
    return "tls_error"


def _peer(sock: ssl.SSLSocket) -> tuple[str | None, str | None]:
    der = sock.getpeercert(binary_form=True)
    if not der:
        return None, None
    cert = x509.load_der_x509_certificate(der)
    try:
        uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier
        )
    except x509.ExtensionNotFound:
        uris = []
    return (uris[0] if len(uris) == 1 else None), format(cert.serial_number, "x")


def context(bundle: Path, identity: LabIdentity | None, *, check_hostname: bool = False) -> ssl.SSLContext:
    """A client context that trusts exactly `bundle`: never the system store (no
    create_default_context(), no load_default_certs(), no certifi), so SSL_CERT_FILE or a CA
    an administrator added cannot make the lab accept a server our CA did not certify.

    No host name check by default (SPIFFE: the identity is the URI SAN, which callers check);
    `check_hostname` for the RA, whose certificate also names the addresses it serves on.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(bundle))
    if identity is not None:
        gen = identity.generation()  # one generation: key and chain always match
        ctx.load_cert_chain(str(gen / "chain.pem"), str(gen / "key.pem"))
    return ctx


def get(
    url: str,
    *,
    bundle: Path,
    identity: LabIdentity | None,
    expect_peer: str | None = None,
    timeout: float = 10.0,
    ctx: ssl.SSLContext | None = None,
) -> Response:
    """One GET over a fresh mTLS connection."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 443
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    ctx = ctx or context(bundle, identity)
    t0 = time.perf_counter()
    peer: tuple[str | None, str | None] = (None, None)
    version = None

    def done(**kw: Any) -> Response:
        return Response(
            peer_spiffe_id=peer[0],
            peer_serial=peer[1],
            tls_version=version,
            elapsed_ms=(time.perf_counter() - t0) * 1000,
            **kw,
        )

    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=timeout)
    try:
        conn.connect()
        assert isinstance(conn.sock, ssl.SSLSocket)
        peer = _peer(conn.sock)
        version = conn.sock.version()
        if expect_peer is not None and peer[0] != expect_peer:
            return done(ok=False, error="peer_mismatch", detail=f"expected {expect_peer}, got {peer[0]}")
        conn.request("GET", path, headers={"Host": f"{host}:{port}"})
        r = conn.getresponse()
        raw = r.read()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"_raw": raw[:200].decode(errors="replace")}
        return done(ok=True, status=r.status, body=body if isinstance(body, dict) else {"_json": body})
    except ssl.SSLError as e:
        return done(ok=False, error="tls_refused", reason=_classify_ssl(e), detail=str(e))
    except TimeoutError as e:
        return done(ok=False, error="timeout", detail=str(e))
    except (ConnectionError, OSError, http.client.HTTPException) as e:
        return done(
            ok=False,
            error="connect" if isinstance(e, ConnectionRefusedError) else "protocol",
            detail=f"{type(e).__name__}: {e}",
        )
    finally:
        conn.close()


def handshake_ok(host: str, port: int, bundle: Path, identity: LabIdentity, timeout: float = 3.0) -> bool:
    """Readiness: a completed TLS handshake (and first read) with a lab identity."""
    r = get(f"https://{host}:{port}/hello", bundle=bundle, identity=identity, timeout=timeout)
    return r.ok
