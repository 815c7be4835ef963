"""What scenarios do to the system, each action recorded in the history with raw evidence.

These are the lab's clients: they call services with lab identities, ask one service to call
another, try what must be refused, run outside tools (curl, openssl), and validate issued
certificates. Every action appends one Operation; checkers judge later.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from cryptography import x509

from zt.lab import metrics_scrape, mtls_client, validators
from zt.lab.history import History, Operation, Outcome
from zt.lab.identity import LabIdentity
from zt.lab.runtime import RunningLab

FAILURES = "mtls_handshake_failures_total"


def _outcome(r: mtls_client.Response) -> Outcome:
    if r.error == "timeout":
        return "unknown"
    return "ok" if r.ok and r.status == 200 else "fail"


def _response_details(r: mtls_client.Response) -> dict[str, object]:
    return {
        "status": r.status,
        "body": r.body,
        "error": r.error,
        "reason": r.reason,
        "detail": r.detail[:300],
        "peer_spiffe_id": r.peer_spiffe_id,
        "peer_serial": r.peer_serial,
        "tls_version": r.tls_version,
        "elapsed_ms": round(r.elapsed_ms, 2),
    }


def call_through(
    lab: RunningLab,
    history: History,
    criterion: str,
    caller: str,
    callee: str,
    driver: LabIdentity,
    expect: str | None = None,
) -> Operation:
    """Ask `caller` to /call `callee`, driving it over mTLS with the test's own identity."""
    target = lab.service_url(callee, from_service=True) + "/hello"
    url = f"{lab.service_url(caller)}/call?target={quote(target, safe='')}"
    if expect is not None:
        url += f"&expect={quote(expect, safe='')}"
    start = time.time()
    r = mtls_client.get(url, bundle=lab.bundle(), identity=driver, expect_peer=lab.topology.spiffe_id(caller))
    return history.record(
        criterion,
        caller,
        "call",
        callee,
        _outcome(r),
        start,
        **_response_details(r),
        caller_id=lab.topology.spiffe_id(caller),
        callee_id=lab.topology.spiffe_id(callee),
        caller_agent_serial=lab.agent_identity(caller).serial,
        callee_agent_serial=lab.agent_identity(callee).serial,
        expected_status=502,
        expected_error="peer_identity_mismatch",
        expect=expect,
    )


def hello(lab: RunningLab, history: History, criterion: str, service: str, identity: LabIdentity) -> Operation:
    start = time.time()
    r = mtls_client.get(
        lab.service_url(service) + "/hello",
        bundle=lab.bundle(),
        identity=identity,
        expect_peer=lab.topology.spiffe_id(service),
    )
    return history.record(
        criterion,
        "test",
        "hello",
        service,
        _outcome(r),
        start,
        **_response_details(r),
        caller_id=identity.spiffe_id,
        server_agent_serial=lab.agent_identity(service).serial,
    )


def attempt_refused(
    lab: RunningLab,
    history: History,
    criterion: str,
    service: str,
    identity: LabIdentity | None,
    expected_client_errors: tuple[str, ...],
    expected_server_reason: str,
) -> Operation:
    """Try /hello in a way the service must refuse; gather the client's error and the server's
    count of handshake failures for the expected reason (the error each side reports)."""
    metrics = lab.metrics_url(service)
    before = metrics_scrape.counter(metrics, FAILURES, reason=expected_server_reason)
    start = time.time()
    r = mtls_client.get(lab.service_url(service) + "/hello", bundle=lab.bundle(), identity=identity)
    delta = metrics_scrape.counter_delta(metrics, FAILURES, before, reason=expected_server_reason)
    client_error = r.reason if r.error == "tls_refused" else r.error
    outcome: Outcome = "unknown" if r.error == "timeout" else ("ok" if r.ok else "fail")
    return history.record(
        criterion,
        "test",
        "hello",
        service,
        outcome,
        start,
        **_response_details(r),
        identity=identity.spiffe_id if identity else None,
        client_error=client_error,
        expected_client_errors=list(expected_client_errors),
        expected_server_reason=expected_server_reason,
        server_reason_delta=delta,
    )


def curl_hello(
    lab: RunningLab, history: History, criterion: str, service: str, identity: LabIdentity, extra: tuple[str, ...] = ()
) -> Operation:
    """The seed's literal exit check: curl with a workload's certificate and key."""
    gen = identity.generation()
    argv = [
        "curl",
        "-sS",
        "--max-time",
        "10",
        "--cacert",
        str(lab.bundle()),
        "--cert",
        str(gen / "chain.pem"),
        "--key",
        str(gen / "key.pem"),
        *extra,
        lab.service_url(service) + "/hello",
    ]
    start = time.time()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    try:
        body = json.loads(r.stdout) if r.stdout.strip() else {}
    except ValueError:
        body = {"_raw": r.stdout[:300]}
    status = 200 if r.returncode == 0 and "caller" in body else None
    return history.record(
        criterion,
        "curl",
        "hello",
        service,
        "ok" if status == 200 else "fail",
        start,
        status=status,
        body=body,
        stderr=r.stderr[-300:],
        exit_code=r.returncode,
        caller_id=identity.spiffe_id,
        command=" ".join(argv),
    )


def validate_issued(lab: RunningLab, history: History, criterion: str, intermediate: Path) -> list[Operation]:
    """Run every certificate the CA issued this run through the independent validators."""
    ops = []
    for pem in lab.issued_certificates():
        cert = x509.load_pem_x509_certificate(pem.encode())
        start = time.time()
        results = validators.validate_all(pem, lab.bundle(), intermediate)
        ok = all(v == "ok" for v in results.values())
        ops.append(
            history.record(
                criterion,
                "validators",
                "validate",
                format(cert.serial_number, "x"),
                "ok" if ok else "fail",
                start,
                validators=results,
            )
        )
    return ops
