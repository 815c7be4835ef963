"""What the Milestone 3 scenario does to the system, each action recorded with raw evidence.

Like zt.lab.clients (whose conventions these follow): one Operation per action, holding what
the client saw, the server's counter deltas and log lines, and the serials involved; checkers
(zt.lab.checks_m3) judge afterwards. The probing loops are zt.lab.revocation_probe's.

Outcomes: "ok" when the request was served (for a revoked certificate, that is the evidence of
a failure), "fail" when it was refused or the connection was ended, "unknown" when no answer
about the certificate came (only connect errors or timeouts, or the setup itself failed).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cryptography import x509

from zt.lab import mtls_client, renewal
from zt.lab.history import History, Operation, Outcome
from zt.lab.identity import LabIdentity
from zt.lab.metrics_scrape import counter, counter_delta
from zt.lab.revocation_probe import (
    BOUND,
    CONNECTIONS_CLOSED,
    HANDSHAKE_FAILURES,
    INTERVAL,
    CutSeries,
    KeepAlive,
    client_context,
    log_events,
    norm_serial,
    served_serial,
    wait_cut,
    wait_refused,
)
from zt.lab.runtime import RunningLab


def log_ts(at: float | None = None) -> str:
    """RFC 3339 UTC with milliseconds, the services' log `ts` format, for "lines since"."""
    t = dt.datetime.fromtimestamp(time.time() if at is None else at, dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Revocation:
    """`ztca revoke` as the operator ran it: what it reported, and when it returned."""

    revoked: list[str]
    crl_number: object
    started: float  # wall clock
    returned_mono: float  # time.monotonic() when ztca returned: the latency's zero
    ztca_ms: float
    since_ts: str  # log lines of refusals after this one are at or after it

    def details(self) -> dict[str, Any]:
        return {"revoked_serials": self.revoked, "crl_number": self.crl_number, "ztca_ms": round(self.ztca_ms, 1)}


def revoke(lab: RunningLab, *, serial: str | None = None, service: str | None = None) -> Revocation:
    since = log_ts(time.time() - 1.0)  # a second of slack for the services' clocks
    started = time.time()
    t0 = time.monotonic()
    doc = lab.revoke(serial=serial, service=service)
    returned = time.monotonic()
    revoked = doc.get("revoked", [])
    return Revocation(
        [str(s) for s in revoked] if isinstance(revoked, list) else [],
        doc.get("crl_number"),
        started,
        returned,
        (returned - t0) * 1000,
        since,
    )


def rejections(lab: RunningLab, service: str, since_ts: str, serial: str | None = None) -> list[dict[str, Any]]:
    """The server's handshake_rejected log lines since `since_ts` (about `serial`, if given)."""
    keep = ("ts", "reason", "peer_serial", "peer_spiffe_id", "peer_addr", "detail")
    out = []
    for e in log_events(lab.component_log(service), "handshake_rejected", since_ts):
        if serial is None or norm_serial(e.get("peer_serial")) == norm_serial(serial):
            out.append({k: e.get(k) for k in keep})
    return out[-10:]


def _hello_url(lab: RunningLab, service: str) -> str:
    return lab.service_url(service) + "/hello"


def direct_refusal(
    lab: RunningLab,
    history: History,
    criterion: str,
    service: str,
    identity: LabIdentity,
    revocation: Revocation,
    *,
    bound: float = BOUND,
    interval: float = 0.1,
) -> Operation:
    """Present a revoked certificate to `service` (new handshakes until one is refused, within
    `bound`) and gather the refusal from both sides."""
    serial = identity.serial
    metrics = lab.metrics_url(service)
    before = counter(metrics, HANDSHAKE_FAILURES, reason="revoked")
    ctx = client_context(lab.bundle(), identity)
    start = time.time()
    series = wait_refused(
        _hello_url(lab, service), lab.bundle(), ctx, since=time.monotonic(), interval=interval, bound=bound
    )
    first = series.first_refusal
    delta = counter_delta(metrics, HANDSHAKE_FAILURES, before, wait=3.0 if first else 0.0, reason="revoked")
    outcome: Outcome = "fail" if first is not None else ("ok" if series.accepted else "unknown")
    return history.record(
        criterion,
        "test",
        "hello",
        service,
        outcome,
        start,
        kind="direct",
        presented_serial=serial,
        presented_by=identity.name,
        **revocation.details(),
        status=None if first is None else first.status,
        error=None if first is None else first.error,
        client_error=None if first is None else (first.reason if first.error == "tls_refused" else first.error),
        detail="" if first is None else first.detail[:300],
        probe=series.to_json(),
        server_revoked_delta=delta,
        server_rejections=rejections(lab, service, revocation.since_ts, serial),
    )


def call_refused(
    lab: RunningLab,
    history: History,
    criterion: str,
    caller: str,
    callee: str,
    driver: LabIdentity,
    revoked_service: str,
    revocation: Revocation,
    *,
    bound: float = BOUND,
) -> Operation:
    """Ask `caller` to /call `callee` while `revoked_service` (one of them) serves a revoked
    certificate, until the call fails (within `bound`). When the caller is the revoked one, the
    callee refuses the handshake (its counters and log are the server's side); when the callee
    is, the caller refuses the upstream's certificate (the /call answer names the reason)."""
    refusing_side = "server" if revoked_service == caller else "caller"
    metrics = lab.metrics_url(callee)
    before = counter(metrics, HANDSHAKE_FAILURES, reason="revoked")
    target = lab.service_url(callee, from_service=True) + "/hello"
    url = f"{lab.service_url(caller)}/call?target={quote(target, safe='')}"
    serving = served_serial(lab.metrics_url(revoked_service))
    start = time.time()
    deadline = time.monotonic() + bound
    attempts = 0
    while True:
        r = mtls_client.get(url, bundle=lab.bundle(), identity=driver, expect_peer=lab.topology.spiffe_id(caller))
        attempts += 1
        if not (r.ok and r.status == 200) or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    delta = counter_delta(
        metrics, HANDSHAKE_FAILURES, before, wait=3.0 if refusing_side == "server" else 0.0, reason="revoked"
    )
    outcome: Outcome = "unknown" if r.error == "timeout" else ("ok" if r.ok and r.status == 200 else "fail")
    return history.record(
        criterion,
        caller,
        "call",
        callee,
        outcome,
        start,
        kind="call",
        refusing_side=refusing_side,
        presented_serial=revocation.revoked[0] if revocation.revoked else None,
        serving_serial=serving,
        serving_serial_after=served_serial(lab.metrics_url(revoked_service)),
        **revocation.details(),
        status=r.status,
        body=r.body,
        error=r.error,
        detail=r.detail[:300],
        attempts=attempts,
        server_revoked_delta=delta,
        server_rejections=rejections(lab, callee, revocation.since_ts),
    )


def valid_hello(
    lab: RunningLab, history: History, criterion: str, service: str, identity: LabIdentity, phase: str
) -> Operation:
    """A request by a valid identity, with the phase it was made in ("during", "after")."""
    start = time.time()
    r = mtls_client.get(
        _hello_url(lab, service), bundle=lab.bundle(), identity=identity, expect_peer=lab.topology.spiffe_id(service)
    )
    outcome: Outcome = "unknown" if r.error == "timeout" else ("ok" if r.ok and r.status == 200 else "fail")
    return history.record(
        criterion,
        "test",
        "hello",
        service,
        outcome,
        start,
        phase=phase,
        status=r.status,
        body=r.body,
        error=r.error,
        reason=r.reason,
        detail=r.detail[:300],
        caller_id=identity.spiffe_id,
        caller_serial=identity.serial,
        elapsed_ms=round(r.elapsed_ms, 2),
    )


def renewal_attempt(
    lab: RunningLab, history: History, criterion: str, identity: LabIdentity, revocation: Revocation, out: Path
) -> Operation:
    """Drive the RA's /v1/renew with `identity`'s certificate and key, as its agent would."""
    start = time.time()
    a = renewal.renew(lab.ra_url(), lab.bundle(), identity, out)
    return history.record(
        criterion,
        "test",
        "renew",
        identity.name,
        "ok" if a.ok else ("unknown" if a.status is None else "fail"),
        start,
        presented_serial=a.presented_serial,
        **revocation.details(),
        status=a.status,
        error=a.error,
        reason=a.reason,
        new_serial=a.new_serial,
        elapsed_ms=round(a.elapsed_ms, 1),
    )


# -- latency trials ------------------------------------------------------------------------------


@dataclass
class TrialResult:
    """One trial's times in seconds: after ztca returned (issue 11's measure) and from its start."""

    service: str
    refused_after_s: float | None
    cut_after_s: float | None
    operations: list[Operation] = field(default_factory=list)
    ztca_s: float = 0.0
    refused_from_start_s: float | None = None
    cut_from_start_s: float | None = None


def _after_return(from_start: float | None, ztca_s: float) -> float | None:
    """A time measured from ztca's start, as seen from ztca's return: an event that happened
    while ztca was still running (the CRL travels faster than the CLI exits) is at 0."""
    return None if from_start is None else round(max(0.0, from_start - ztca_s), 4)


def latency_trial(
    lab: RunningLab,
    history: History,
    service: str,
    base: LabIdentity,
    out: Path,
    *,
    with_connection: bool = True,
    interval: float = INTERVAL,
    bound: float = BOUND,
    ztca_allowance: float = 30.0,
) -> TrialResult:
    """One timed revocation against `service`: a fresh certificate (renewed from `base`), seen
    accepted on a new handshake and on a keep-alive connection; then `ztca revoke` it while, in
    parallel and from the moment ztca starts, new handshakes every `interval` probe for the first
    refusal (m3.latency) and a request on the open connection every `interval` probes for its end
    (m3.open_connection_cut).

    Issue 11 times from ztca *returning*; ztca is a CLI that takes seconds to start and exit on a
    loaded machine, and the new CRL often reaches the services before it has exited. So each time
    is kept both ways: from ztca's start (what an operator waits at most) and from its return (0
    when the refusal came first). The bound applies to the time after the return; the probes run
    at most `ztca_allowance` + `bound` seconds."""
    start = time.time()
    fresh = renewal.renew(lab.ra_url(), lab.bundle(), base, out)
    if fresh.identity is None:
        op = history.record(
            "m3.latency",
            "test",
            "trial",
            service,
            "unknown",
            start,
            setup_failed=f"renewal {fresh.status} {fresh.error}",
        )
        return TrialResult(service, None, None, [op])
    ident = fresh.identity
    url = _hello_url(lab, service)
    ctx = client_context(lab.bundle(), ident)
    before = mtls_client.get(
        url, bundle=lab.bundle(), identity=None, ctx=ctx, expect_peer=lab.topology.spiffe_id(service)
    )
    accepted_before = before.ok and before.status == 200
    conn: KeepAlive | None = None
    served_as: str | None = None
    if with_connection:
        try:
            conn = KeepAlive(url, ctx)
            first = conn.get("/hello")
            served_as = str(first.body.get("caller_serial")) if first.ok and first.status == 200 else None
        except OSError as e:
            served_as = f"could not open: {type(e).__name__}: {e}"
    metrics = lab.metrics_url(service)
    fail0 = counter(metrics, HANDSHAKE_FAILURES, reason="revoked")
    closed0 = counter(metrics, CONNECTIONS_CLOSED, reason="revoked")
    limit = ztca_allowance + bound
    with ThreadPoolExecutor(2, thread_name_prefix=f"m3-trial-{service}") as pool:
        t0 = time.monotonic()
        refusal = pool.submit(wait_refused, url, lab.bundle(), ctx, since=t0, interval=interval, bound=limit)
        cut = (
            pool.submit(wait_cut, conn, since=t0, interval=interval, bound=limit)
            if conn is not None and conn.open
            else None
        )
        rev = revoke(lab, serial=ident.serial)
        ztca_s = rev.returned_mono - t0
        series = refusal.result()
        cut_series: CutSeries | None = cut.result() if cut is not None else None
    if conn is not None:
        conn.close()
    fail_delta = counter_delta(
        metrics, HANDSHAKE_FAILURES, fail0, wait=3.0 if series.first_refusal else 0.0, reason="revoked"
    )
    common = {
        "stack": service,
        "presented_serial": ident.serial,
        **rev.details(),
        "ztca_s": round(ztca_s, 4),
        "accepted_before": accepted_before,
        "before": {"status": before.status, "error": before.error, "detail": before.detail[:200]},
    }
    refused_after = _after_return(series.refused_after_s, ztca_s)
    ops = [
        history.record(
            "m3.latency",
            "test",
            "trial",
            service,
            "fail" if series.first_refusal is not None else "ok",
            start,
            **common,
            refused_from_start_s=series.refused_after_s,
            refused_after_return_s=refused_after,
            probe=series.to_json(),
            server_revoked_delta=fail_delta,
        )
    ]
    cut_after = None
    if with_connection:
        closed_delta = 0.0
        if cut_series is not None:
            cut_after = _after_return(cut_series.cut_after_s, ztca_s)
            closed_delta = counter_delta(
                metrics, CONNECTIONS_CLOSED, closed0, wait=2.0 if cut_series.cut else 0.0, reason="revoked"
            )
        ops.append(
            history.record(
                "m3.open_connection_cut",
                "test",
                "keepalive",
                service,
                "unknown" if cut_series is None else ("fail" if cut_series.cut is not None else "ok"),
                start,
                **common,
                served_caller_serial=served_as,
                cut_from_start_s=None if cut_series is None else cut_series.cut_after_s,
                cut_after_return_s=cut_after,
                cut=cut_series.to_json() if cut_series is not None else None,
                server_closed_delta=closed_delta,
            )
        )
    return TrialResult(
        service,
        refused_after,
        cut_after,
        ops,
        ztca_s=ztca_s,
        refused_from_start_s=series.refused_after_s,
        cut_from_start_s=None if cut_series is None else cut_series.cut_after_s,
    )


# -- expiry -------------------------------------------------------------------------------------


class ExpiryWatch:
    """A keep-alive connection per service, held by a client whose short-lived certificate is
    never renewed: a request every `interval` from now until the connection is ended, or until
    `bound` seconds after the certificate's notAfter. Runs in the background (the certificate
    needs its lifetime to pass) while the scenario does other things; `finish()` records."""

    def __init__(
        self, lab: RunningLab, identity: LabIdentity, services: tuple[str, ...], *, interval: float = 0.25
    ) -> None:
        self.lab = lab
        self.identity = identity
        self.not_after = x509.load_pem_x509_certificate(identity.cert.read_bytes()).not_valid_after_utc.timestamp()
        self.interval = interval
        self.started = time.time()
        self.results: dict[str, dict[str, Any]] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        for s in services:
            t = threading.Thread(target=self._watch, args=(s,), name=f"m3-expiry-{s}", daemon=True)
            t.start()
            self._threads.append(t)

    def _watch(self, service: str) -> None:
        r: dict[str, Any] = {"not_after": self.not_after}
        try:
            metrics = self.lab.metrics_url(service)
            closed0 = counter(metrics, CONNECTIONS_CLOSED, reason="expired")
            ctx = client_context(self.lab.bundle(), self.identity)
            conn = KeepAlive(_hello_url(self.lab, service), ctx)
            first = conn.get("/hello")
            r["first"] = {
                "status": first.status,
                "error": first.error,
                "caller_serial": first.body.get("caller_serial"),
            }
            served_before = first.ok and first.status == 200 and time.time() < self.not_after
            since = time.monotonic()
            to_expiry = self.not_after - time.time()
            series = wait_cut(conn, since=since, interval=self.interval, bound=max(0.0, to_expiry) + BOUND)
            conn.close()
            cut = series.to_json()
            # times relative to notAfter (negative before the expiry), on the wall clock the
            # certificate and the server use: a step of the host's clock (NTP) between the first
            # request and the cut would otherwise show as a cut before the expiry
            if series.cut is not None:
                cut["cut_after_s"] = round(series.cut.wall - self.not_after, 4)
            if series.last_served_wall is not None:
                cut["last_served_s"] = round(series.last_served_wall - self.not_after, 4)
            cut["bound_s"] = BOUND
            r.update(
                served_before_expiry=served_before and (series.served > 0 or to_expiry > 0),
                cut=cut,
                cut_body_error=series.cut.body_error if series.cut is not None else None,
                server_closed_delta=counter_delta(
                    metrics, CONNECTIONS_CLOSED, closed0, wait=2.0 if series.cut else 0.0, reason="expired"
                ),
            )
        except Exception as e:  # noqa: BLE001 - a broken watch is recorded as unknown, never lost
            r["error"] = f"{type(e).__name__}: {e}"
        with self._lock:
            self.results[service] = r

    def finish(self, history: History, timeout: float) -> list[Operation]:
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        ops = []
        with self._lock:
            results = dict(self.results)
        for t in self._threads:
            service = t.name.removeprefix("m3-expiry-")
            r = results.get(service)
            if r is None or "error" in r or "cut" not in r:
                ops.append(
                    history.record(
                        "m3.expired_connection_cut",
                        "test",
                        "keepalive",
                        service,
                        "unknown",
                        self.started,
                        caller_serial=self.identity.serial,
                        **(r or {"error": "the watch did not finish"}),
                    )
                )
                continue
            cut_seen = r["cut"]["cut_after_s"] is not None
            ops.append(
                history.record(
                    "m3.expired_connection_cut",
                    "test",
                    "keepalive",
                    service,
                    "fail" if cut_seen else "ok",
                    self.started,
                    caller_serial=self.identity.serial,
                    **r,
                )
            )
        return ops


def wait_for(what: Callable[[], Any], *, timeout: float, interval: float = 0.2) -> tuple[Any, float]:
    """Poll `what` until it returns something truthy or `timeout` passes: (value, seconds waited)."""
    t0 = time.monotonic()
    while True:
        v = what()
        if v or time.monotonic() - t0 >= timeout:
            return v, time.monotonic() - t0
        time.sleep(interval)
