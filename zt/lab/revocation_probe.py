"""Probing how fast a revocation bites: new handshakes, and connections that are already open.

A revocation travels from `ztca revoke` (the CA's store and a new CRL) through the publisher and
each agent's CRL fetch to the service, which loads the CRL and refuses the serial. What a peer
sees is the end of that chain, so the lab measures it from the outside, from the moment
`ztca revoke` returns:

- `wait_refused`: a new mTLS handshake with the revoked certificate every `interval` seconds
  (a fixed schedule, so the resolution is known: about one interval plus one handshake) until
  the service refuses one, or a bound passes with the certificate still accepted;
- `KeepAlive` and `wait_cut`: one keep-alive TLS connection opened before the revocation, a
  request on it every `interval`, until the service stops serving it (issue 18: TLS checks the
  peer only at the handshake, so a service must end such connections itself).

Each probe returns raw observations (timings, the client's error class, the library's text);
the server's side (its counters and log lines) is gathered by the caller and checkers decide.
Every loop is bounded in time.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from zt.lab import mtls_client
from zt.lab.identity import LabIdentity

HANDSHAKE_FAILURES = "mtls_handshake_failures_total"
CONNECTIONS_CLOSED = "mtls_connections_closed_total"
INTERVAL = 0.05  # seconds between probes: the measurement's resolution
BOUND = 30.0  # a revoked certificate still accepted after this long is a failure, not a slow figure


def norm_serial(serial: object) -> str:
    """Serials compare as lower-case hex without leading zeros (logs and JSON may differ)."""
    return str(serial).lower().removeprefix("0x").lstrip("0") or "0"


@dataclass(frozen=True)
class Attempt:
    at: float  # seconds after the revocation returned
    accepted: bool
    status: int | None
    error: str | None
    reason: str | None
    detail: str
    caller_serial: str | None = None
    body_error: str | None = None  # the JSON `error` of a non-200 answer (e.g. peer_certificate_expired)
    # wall-clock time of the answer: what a certificate's notAfter is compared with (by the
    # server too), so expiry timing is measured on it and survives a step of the host's clock
    wall: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {
            "at_s": round(self.at, 4),
            "accepted": self.accepted,
            "status": self.status,
            "error": self.error,
            "reason": self.reason,
            "detail": self.detail[:300],
            "caller_serial": self.caller_serial,
            "body_error": self.body_error,
        }


@dataclass(frozen=True)
class ProbeSeries:
    """A run of probes after a revocation: when the service last accepted, and first refused."""

    attempts: int
    accepted: int  # probes the service still served after the revocation returned
    first_refusal: Attempt | None  # None: still accepted when the bound passed
    last_accepted_s: float | None
    transient_errors: int  # connect errors and timeouts: neither acceptance nor refusal
    bound_s: float
    interval_s: float
    samples: list[dict[str, Any]] = field(default_factory=list)  # first and last few attempts
    closed_unanswered: int = 0  # connections ended without an answer or an alert (see wait_refused)

    @property
    def refused_after_s(self) -> float | None:
        return self.first_refusal.at if self.first_refusal is not None else None

    def to_json(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "accepted_after_revoke": self.accepted,
            "refused_after_s": None if self.refused_after_s is None else round(self.refused_after_s, 4),
            "last_accepted_s": None if self.last_accepted_s is None else round(self.last_accepted_s, 4),
            "first_refusal": self.first_refusal.to_json() if self.first_refusal is not None else None,
            "transient_errors": self.transient_errors,
            "closed_unanswered": self.closed_unanswered,
            "bound_s": self.bound_s,
            "interval_s": self.interval_s,
            "samples": self.samples,
        }


def _attempt(r: mtls_client.Response, at: float) -> Attempt:
    return Attempt(
        at,
        r.ok and r.status == 200,
        r.status,
        r.error,
        r.reason,
        r.detail,
        str(r.body.get("caller_serial")) if r.ok and r.body.get("caller_serial") else None,
        str(r.body.get("error")) if r.ok and r.status != 200 and r.body.get("error") else None,
    )


def _sample(samples: list[dict[str, Any]], a: Attempt, keep: int = 6) -> None:
    if len(samples) < keep:
        samples.append(a.to_json())
    else:  # keep the first few and the latest few
        samples[keep // 2 :] = [*samples[keep // 2 + 1 :], a.to_json()]


def wait_refused(
    url: str,
    bundle: Path,
    ctx: ssl.SSLContext,
    *,
    since: float,
    interval: float = INTERVAL,
    bound: float = BOUND,
    expect_peer: str | None = None,
) -> ProbeSeries:
    """New handshakes (GET `url`) with the identity in `ctx`, on a fixed schedule starting at
    `since` (time.monotonic() when the clock starts), until the service refuses one with a TLS
    alert, or `bound` seconds pass.

    A connection closed without an answer and without an alert is not a refusal: it is what a
    handshake accepted just before the new CRL loaded looks like when the service then ends the
    connection (issue 18's cut, which the keep-alive probe measures). It is counted
    (`closed_unanswered`) and probing goes on; so are connect errors and timeouts (`transient`).
    """
    attempts = accepted = transient = closed = 0
    last_ok: float | None = None
    samples: list[dict[str, Any]] = []
    tick = 0
    while True:
        now = time.monotonic() - since
        if now > bound:
            return ProbeSeries(attempts, accepted, None, last_ok, transient, bound, interval, samples, closed)
        r = mtls_client.get(url, bundle=bundle, identity=None, ctx=ctx, timeout=5, expect_peer=expect_peer)
        a = _attempt(r, time.monotonic() - since)
        attempts += 1
        _sample(samples, a)
        if a.accepted:
            accepted += 1
            last_ok = a.at
        elif r.error == "tls_refused":
            return ProbeSeries(attempts, accepted, a, last_ok, transient, bound, interval, samples, closed)
        elif r.error == "protocol":
            closed += 1
        else:  # connect error, timeout, peer mismatch: not an answer about the certificate
            transient += 1
        tick += 1
        time.sleep(max(0.0, since + tick * interval - time.monotonic()))


class KeepAlive:
    """One mTLS connection held open and reused for request after request (HTTP/1.1
    keep-alive), as a client that never reconnects: once the service ends it, it stays ended
    (http.client would silently reconnect, with a new handshake, and hide the cut)."""

    def __init__(self, url: str, ctx: ssl.SSLContext, timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 443
        self.timeout = timeout
        raw = socket.create_connection((self.host, self.port), timeout=timeout)
        try:
            self.sock: ssl.SSLSocket | None = ctx.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
        self.served = 0

    def get(self, path: str = "/hello") -> mtls_client.Response:
        """One request on this connection; any failure (or a response that closes) ends it."""
        t0 = time.perf_counter()
        if self.sock is None:
            return mtls_client.Response(ok=False, error="closed", detail="connection already ended")
        try:
            self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode())
            resp = http.client.HTTPResponse(self.sock, method="GET")
            resp.begin()
            raw = resp.read()
            will_close = resp.will_close
        except TimeoutError as e:
            self.close()
            return mtls_client.Response(ok=False, error="timeout", detail=str(e))
        except ssl.SSLError as e:
            self.close()
            return mtls_client.Response(
                ok=False, error="tls_refused", reason=mtls_client._classify_ssl(e), detail=str(e)
            )
        except (OSError, http.client.HTTPException) as e:
            self.close()
            return mtls_client.Response(ok=False, error="closed", detail=f"{type(e).__name__}: {e}")
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {"_raw": raw[:200].decode(errors="replace")}
        if will_close:  # answered, and the server said it closes (e.g. 401 peer_certificate_expired)
            self.close()
        else:
            self.served += 1
        return mtls_client.Response(
            ok=True,
            status=resp.status,
            body=body if isinstance(body, dict) else {"_json": body},
            detail="connection: close" if will_close else "",
            elapsed_ms=(time.perf_counter() - t0) * 1000,
        )

    @property
    def open(self) -> bool:
        return self.sock is not None

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None


@dataclass(frozen=True)
class CutSeries:
    """Requests on one open connection after an event (a revocation, an expiry)."""

    requests: int
    served: int  # answered 200 after the event
    cut: Attempt | None  # the first request the connection did not serve (None: still served at the bound)
    last_served_s: float | None
    bound_s: float
    interval_s: float
    samples: list[dict[str, Any]] = field(default_factory=list)
    last_served_wall: float | None = None  # time.time() of the last 200 (see Attempt.wall)

    @property
    def cut_after_s(self) -> float | None:
        return self.cut.at if self.cut is not None else None

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "served_after_event": self.served,
            "cut_after_s": None if self.cut_after_s is None else round(self.cut_after_s, 4),
            "last_served_s": None if self.last_served_s is None else round(self.last_served_s, 4),
            "cut": self.cut.to_json() if self.cut is not None else None,
            "bound_s": self.bound_s,
            "interval_s": self.interval_s,
            "samples": self.samples,
        }


def wait_cut(conn: KeepAlive, *, since: float, interval: float = INTERVAL, bound: float = BOUND) -> CutSeries:
    """A request on `conn` every `interval` seconds from `since` (time.monotonic()) until one is
    not served with 200 (the connection was ended, or answered an error and closed), or `bound`
    seconds pass with the connection still served."""
    requests = served = 0
    last_ok: float | None = None
    last_ok_wall: float | None = None
    samples: list[dict[str, Any]] = []
    tick = 0
    while True:
        if time.monotonic() - since > bound:
            return CutSeries(requests, served, None, last_ok, bound, interval, samples, last_ok_wall)
        r = conn.get("/hello")
        a = _attempt(r, time.monotonic() - since)
        requests += 1
        _sample(samples, a)
        if a.accepted and conn.open:
            served += 1
            last_ok, last_ok_wall = a.at, a.wall
        else:
            return CutSeries(requests, served, a, last_ok, bound, interval, samples, last_ok_wall)
        tick += 1
        time.sleep(max(0.0, since + tick * interval - time.monotonic()))


# -- the server's side --------------------------------------------------------------------------


def served_serial(metrics_url: str) -> str | None:
    """The serial a service serves now, as its /healthz reports it."""
    try:
        doc = httpx.get(metrics_url + "/healthz", timeout=3).json()
    except (httpx.HTTPError, ValueError):
        return None
    return str(doc["serial"]) if isinstance(doc, dict) and doc.get("serial") else None


def log_events(log_text: str, event: str, since_ts: str | None = None) -> list[dict[str, Any]]:
    """The JSON log lines of `event` in a component's log (at or after RFC 3339 `since_ts`)."""
    out = []
    for line in log_text.splitlines():
        line = line.strip()
        start = line.find("{")
        if start < 0:
            continue
        try:
            doc = json.loads(line[start:])
        except ValueError:
            continue
        fresh = since_ts is None or str(doc.get("ts", "")) >= since_ts if isinstance(doc, dict) else False
        if isinstance(doc, dict) and doc.get("event") == event and fresh:
            out.append(doc)
    return out


def nearest_rank(values: list[float], p: float) -> float:
    """The p-th percentile by nearest rank: with ten samples per stack, p99 is the maximum, and no
    interpolation invents a value between two measurements."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def latency_summary(values: list[float]) -> dict[str, float | int | None]:
    """n, p50, p99 and max of some latencies in seconds (None when there are none)."""
    if not values:
        return {"n": 0, "p50_s": None, "p99_s": None, "max_s": None}
    return {
        "n": len(values),
        "p50_s": round(nearest_rank(values, 50), 3),
        "p99_s": round(nearest_rank(values, 99), 3),
        "max_s": round(max(values), 3),
    }


def client_context(bundle: Path, identity: LabIdentity) -> ssl.SSLContext:
    """A client context holding `identity` (one generation, resolved now): each connection made
    with it is a full handshake (Python resumes a TLS session only when handed one)."""
    return mtls_client.context(bundle, identity)
