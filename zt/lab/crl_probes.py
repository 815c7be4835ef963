"""What the CRL scenarios do to the system, each action recorded with raw evidence.

Probes for Milestone 3's CRL criteria (zt.lab.checks_m3_crl): a handshake against a service
whose CRL is stale, the same after the publisher came back, a service's loaded CRL size, and
the validation of every CRL collected (zt.lab.crl_watch). Each records what the client saw,
the service's own metrics (zt.lab.metrics_scrape) and its own log lines (the services log one
JSON object per line, docs/contracts.md section 7), and leaves the verdict to the checkers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from zt.lab import crl_validate, metrics_scrape, mtls_client, process, rotations
from zt.lab.clients import FAILURES
from zt.lab.crl_watch import CrlWatcher
from zt.lab.history import History, Operation, Outcome
from zt.lab.identity import LabIdentity
from zt.lab.runtime import RunningLab

STALE = "mtls_crl_stale"
NEXT_UPDATE = "mtls_crl_next_update_seconds"
ENTRIES = "mtls_crl_entries"


def log_events(lab: RunningLab, service: str, *events: str) -> list[dict[str, Any]]:
    """The service's own log lines with one of `events`, as the runtime keeps its log."""
    return [e for e in rotations.log_events(lab.component_log(service)) if e.get("event") in events]


def gauge(lab: RunningLab, service: str, name: str) -> float:
    return metrics_scrape.value(metrics_scrape.scrape(lab.metrics_url(service)), name)


def wait_past_next_update(lab: RunningLab, services: list[str], *, margin: float = 1.5, timeout: float = 180) -> float:
    """Wait until every service's loaded CRL is past its nextUpdate (plus `margin` seconds), by
    the services' own gauge; returns the latest of those nextUpdates."""
    deadline = time.monotonic() + timeout
    while True:
        latest = max(gauge(lab, s, NEXT_UPDATE) for s in services)
        if latest > 0 and time.time() > latest + margin:
            return latest
        if time.monotonic() > deadline:
            raise TimeoutError(f"the services' CRLs were not past nextUpdate after {timeout:g}s (latest {latest})")
        time.sleep(min(1.0, max(0.1, latest + margin - time.time())))


def _hello(lab: RunningLab, service: str, identity: LabIdentity) -> mtls_client.Response:
    return mtls_client.get(lab.service_url(service) + "/hello", bundle=lab.bundle(), identity=identity)


def _outcome(r: mtls_client.Response) -> Outcome:
    if r.error == "timeout":
        return "unknown"
    return "ok" if r.ok and r.status == 200 else "fail"


def _response(r: mtls_client.Response) -> dict[str, Any]:
    return {
        "status": r.status,
        "body": r.body,
        "error": r.error,
        "reason": r.reason,
        "client_error": r.reason if r.error == "tls_refused" else r.error,
        "detail": r.detail[:300],
        "elapsed_ms": round(r.elapsed_ms, 2),
    }


def _failures_after(lab: RunningLab, service: str, reason: str, before: float, wait: float) -> float:
    """How many more handshake failures with `reason` the server counted than `before`: it
    counts after it sent its alert, so give it up to `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        delta = metrics_scrape.value(metrics_scrape.scrape(lab.metrics_url(service)), FAILURES, reason=reason) - before
        if delta >= 1 or time.monotonic() >= deadline:
            return delta
        time.sleep(0.1)


def probe_stale(
    lab: RunningLab, history: History, criterion: str, service: str, identity: LabIdentity, *, publisher: str
) -> Operation:
    """One handshake (and GET /hello) against a service whose CRL is past nextUpdate."""
    mode = lab.topology.crl_stale_mode(service)
    before = metrics_scrape.value(metrics_scrape.scrape(lab.metrics_url(service)), FAILURES, reason="crl_stale")
    start = time.time()
    r = _hello(lab, service, identity)
    delta = _failures_after(lab, service, "crl_stale", before, 3.0 if mode == "refuse" else 0.0)
    samples = metrics_scrape.scrape(lab.metrics_url(service))
    logged = log_events(lab, service, "crl_stale", "handshake_rejected")
    return history.record(
        criterion,
        service,
        "stale_handshake",
        service,
        _outcome(r),
        start,
        **_response(r),
        mode=mode,
        publisher=publisher,
        identity=identity.spiffe_id,
        server_reason_delta=delta,
        metric_crl_stale=metrics_scrape.value(samples, STALE),
        crl_next_update=metrics_scrape.value(samples, NEXT_UPDATE),
        crl_stale_logged=[e for e in logged if e.get("event") == "crl_stale"][-5:],
        rejections_logged=[
            e for e in logged if e.get("event") == "handshake_rejected" and e.get("reason") == "crl_stale"
        ][-3:],
    )


def wait_fresh(lab: RunningLab, service: str, *, timeout: float = 60) -> None:
    """Until the service holds a CRL whose nextUpdate is ahead and says it is not stale."""
    process.wait_until(
        f"{service} to load a fresh CRL",
        lambda: gauge(lab, service, NEXT_UPDATE) > time.time() and gauge(lab, service, STALE) == 0,
        timeout=timeout,
        interval=0.5,
    )


def probe_recovered(
    lab: RunningLab, history: History, criterion: str, service: str, identity: LabIdentity
) -> Operation:
    start = time.time()
    r = _hello(lab, service, identity)
    samples = metrics_scrape.scrape(lab.metrics_url(service))
    return history.record(
        criterion,
        service,
        "recovered",
        service,
        _outcome(r),
        start,
        **_response(r),
        mode=lab.topology.crl_stale_mode(service),
        metric_crl_stale=metrics_scrape.value(samples, STALE),
        crl_next_update=metrics_scrape.value(samples, NEXT_UPDATE),
    )


def wait_crl_entries(lab: RunningLab, service: str, entries: int, *, timeout: float = 120) -> float:
    """Until the service's loaded CRL(s) hold at least `entries` serials; returns the seconds waited."""
    t0 = time.monotonic()
    process.wait_until(
        f"{service} to load a CRL of {entries}+ entries",
        lambda: gauge(lab, service, ENTRIES) >= entries,
        timeout=timeout,
        interval=0.5,
    )
    return time.monotonic() - t0


def record_crl_loaded(lab: RunningLab, history: History, criterion: str, service: str, expected: int) -> Operation:
    start = time.time()
    samples = metrics_scrape.scrape(lab.metrics_url(service))
    loaded = log_events(lab, service, "crl_loaded")
    entries = metrics_scrape.value(samples, ENTRIES)
    return history.record(
        criterion,
        service,
        "crl_loaded",
        service,
        "ok" if entries >= expected else "fail",
        start,
        metric_crl_entries=entries,
        expected_entries=expected,
        crl_loaded_logged=loaded[-2:],
    )


def validate_collected(history: History, criterion: str, watcher: CrlWatcher, issuer: Path) -> list[Operation]:
    """Every CRL the watcher collected through both validators, one operation each."""
    ops = []
    for c in watcher.crls():
        start = time.time()
        results = crl_validate.validate_crl(c.der, issuer)
        ops.append(
            history.record(
                criterion,
                "validators",
                "validate_crl",
                f"crl {c.number}",
                "ok" if all(v == "ok" for v in results.values()) else "fail",
                start,
                validators=results,
                crl_number=c.number,
                entries=c.entries,
                this_update=c.this_update,
                next_update=c.next_update,
                seen_at=c.seen_at,
                der_bytes=len(c.der),
            )
        )
    return ops
