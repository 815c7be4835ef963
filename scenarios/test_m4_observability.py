"""Milestone 4: what the system says about itself — logs, metrics through a real Prometheus,
and the audit log — agrees with what happened to it.

Runs on either runtime against the real system plus a Prometheus server the lab starts
(Topology.prometheus) that scrapes every component every second. The story, in order
(the `story` fixture), each step's expected traces known to the test:

1. a baseline read from Prometheus (handshake and rotation counters), after a scrape newer
   than the moment it is taken;
2. an issuance: a client identity bootstrapped with its one-time token (the RA logs `issued`);
3. requests that must succeed (a valid client's /hello to each service) and handshakes that
   must be refused (that client's certificate once revoked, and no certificate at all, at
   each service); the revocation is `ztca revoke` of the client's serial (ztca logs
   `revoked`), and the services log `handshake_rejected` with that serial;
4. a manual rotation of each service's identity (the agent and the service log `rotation`);
5. a second read from Prometheus, after a scrape newer than the last action.

Then the tests judge (zt.lab.checks_m4): the logs' schema and events, Prometheus's counters
against the counts the scenario saw, the expiry gauge against the served certificate, the
audit log against the CA, and every log against every secret of the run. The report gets
plots from Prometheus range queries.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from zt.lab import checks_m4, log_evidence, metrics_scrape, mtls_client, prometheus_plots, secrets_scan
from zt.lab.core import CA_DIR, progress
from zt.lab.figures import Figures
from zt.lab.history import History, Operation, Outcome
from zt.lab.identity import LabIdentity
from zt.lab.prometheus import FIRST_QUESTIONS, Prometheus, PrometheusError
from zt.lab.prometheus import answers as prometheus_answers
from zt.lab.revocation_probe import served_serial
from zt.lab.runtime import RunningLab
from zt.lab.topology import Topology

pytestmark = pytest.mark.milestone(4)

LAB_TOPOLOGY = Topology(agent_metrics=True, prometheus=True)
STACKS = checks_m4.STACKS
OK_PER_SERVICE = 3
# A log file's name per component, by runtime (process: the program's; containers: the role's).
LOG_NAMES = {"zt-ra": ("zt-ra", "ra"), "ztca": ("ztca",)}


def _assert_all(ops: list[Operation], predicate: Callable[[Operation], str | None]) -> None:
    bad = [f"{o.actor} {o.op} {o.target}: {predicate(o)}" for o in ops if predicate(o) is not None]
    assert bad == [], "\n".join(bad)


def _rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _not_after(cert_pem: Path) -> dt.datetime:
    return x509.load_pem_x509_certificate(cert_pem.read_bytes()).not_valid_after_utc


@dataclass
class Reading:
    """Counters as Prometheus had them after a scrape newer than `after`."""

    after: float
    handshakes: dict[str, dict[str, float]] = field(default_factory=dict)  # service -> result -> n
    rotations: dict[str, float] = field(default_factory=dict)  # job -> counter


@dataclass
class Story:
    start: float
    before: Reading
    after: Reading
    client: LabIdentity
    revoked: LabIdentity
    revoked_serial: str
    crl_number: Any
    made_ok: dict[str, int]
    made_refused: dict[str, int]
    rejections: dict[str, list[dict[str, Any]]]  # service -> what the client saw per refused attempt
    rotations: dict[str, tuple[str, str]]  # service -> (old, new) serial
    end: float


def _read(prom: Prometheus, after: float) -> Reading:
    prom.wait_scraped_after(after)
    r = Reading(after)
    for s in STACKS:
        r.handshakes[s] = {
            res: prom.scalar_of(f'mtls_handshakes_total{{job="{s}",result="{res}"}}') or 0.0
            for res in ("success", "failure")
        }
        r.rotations[s] = prom.scalar_of(f'mtls_rotation_total{{job="{s}",result="success"}}') or 0.0
        r.rotations[f"agent-{s}"] = prom.scalar_of(f'rotation_success_total{{job="agent-{s}"}}') or 0.0
    return r


@pytest.fixture(scope="module")
def prom(lab: RunningLab) -> Prometheus:
    return Prometheus(lab.prometheus_url())


def _attempt(lab: RunningLab, service: str, identity: LabIdentity | None) -> mtls_client.Response:
    return mtls_client.get(lab.service_url(service) + "/hello", bundle=lab.bundle(), identity=identity)


def _wait(what: str, check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            progress(f"gave up waiting for {what} after {timeout:.0f}s")
            return False
        time.sleep(0.2)
    return True


@pytest.fixture(scope="module")
def story(lab: RunningLab, prom: Prometheus, client_identity: Callable[..., LabIdentity]) -> Story:
    start = time.time()

    def step(msg: str) -> None:
        progress(f"m4 +{time.time() - start:.1f}s: {msg}")

    step("baseline from Prometheus")
    before = _read(prom, start)
    step("issuance (a client bootstraps with its token)")
    client = client_identity("m4-client")  # served first, revoked later: one bootstrap, not two
    revoked = client
    made_ok = dict.fromkeys(STACKS, 0)
    made_refused = dict.fromkeys(STACKS, 0)
    step(f"{OK_PER_SERVICE} valid requests per service")
    for s in STACKS:
        for _ in range(OK_PER_SERVICE):
            r = _attempt(lab, s, client)
            assert r.ok, f"a valid request to {s} failed: {r.error} {r.reason} {r.detail[:200]}"
            made_ok[s] += 1
    step(f"ztca revoke {revoked.serial}")
    rev = lab.revoke(serial=revoked.serial)
    revoked_serial = revoked.serial
    for s in STACKS:  # each service has the new CRL before the revoked certificate is presented
        url = lab.metrics_url(s)
        _wait(f"{s} to load the CRL", lambda: metrics_scrape.counter(url, "mtls_crl_entries") >= 1, timeout=15)  # noqa: B023
    step("refused handshakes (the revoked certificate, and none at all) on each service")
    rejections: dict[str, list[dict[str, Any]]] = {s: [] for s in STACKS}
    for s in STACKS:
        attempts: tuple[tuple[str, LabIdentity | None], ...] = (("revoked", revoked), ("no certificate", None))
        for who, ident in attempts:
            r = _attempt(lab, s, ident)
            seen = {"who": who, "ok": r.ok, "error": r.error, "reason": r.reason, "detail": r.detail[:200]}
            rejections[s].append(seen)
            if r.ok:
                made_ok[s] += 1  # accepted: the metrics must say so too; the events check fails it
            elif r.error == "tls_refused":
                made_refused[s] += 1
            else:
                pytest.fail(f"{who} certificate to {s}: neither served nor refused: {seen}")
    step("a manual rotation of each service's identity")
    rotations = {}
    for s in STACKS:
        old, url = lab.agent_identity(s).serial, lab.metrics_url(s)
        lab.rotate(s)
        assert _wait(f"agent-{s} to rotate", lambda: lab.agent_identity(s).serial != old, timeout=30)  # noqa: B023
        new = lab.agent_identity(s).serial
        assert _wait(f"{s} to serve {new}", lambda: served_serial(url) == new, timeout=30)  # noqa: B023
        rotations[s] = (old, new)
    end = time.time()
    time.sleep(0.5)  # a service counts a refused handshake after it sent its alert
    step("reading Prometheus after the last action")
    after = _read(prom, end + 0.5)
    return Story(
        start,
        before,
        after,
        client,
        revoked,
        revoked_serial,
        rev.get("crl_number"),
        made_ok,
        made_refused,
        rejections,
        rotations,
        end,
    )


def test_prometheus_counted_handshakes_and_rotations(history: History, story: Story) -> None:
    ops = []
    for s in STACKS:
        ops.append(
            history.record(
                "m4.metrics",
                "prometheus",
                "query",
                s,
                "ok",
                story.start,
                kind="handshakes",
                before=story.before.handshakes[s],
                after=story.after.handshakes[s],
                made_ok=story.made_ok[s],
                made_refused=story.made_refused[s],
                client_saw=story.rejections[s],
                query=f'mtls_handshakes_total{{job="{s}"}}',
            )
        )
        for job, metric in ((s, "mtls_rotation_total{result=success}"), (f"agent-{s}", "rotation_success_total")):
            ops.append(
                history.record(
                    "m4.metrics",
                    "prometheus",
                    "query",
                    job,
                    "ok",
                    story.start,
                    kind="rotations",
                    metric=metric,
                    before=story.before.rotations[job],
                    after=story.after.rotations[job],
                    rotations=1,
                    serials=story.rotations[s],
                )
            )
    _assert_all(ops, checks_m4.prometheus_saw)


def test_prometheus_expiry_is_seconds_until_the_served_not_after(
    lab: RunningLab, history: History, prom: Prometheus, story: Story
) -> None:
    ops = []
    for s in STACKS:
        start = time.time()
        ident = lab.agent_identity(s)
        try:
            prom.wait_scraped_after(start)
            [value] = prom.query(f'mtls_cert_expiry_seconds{{job="{s}"}}')
            scraped_at = prom.scalar_of(f'timestamp(mtls_cert_expiry_seconds{{job="{s}"}})')
            info = prom.query(f'mtls_cert_info{{job="{s}"}}')
            absolute = prom.scalar_of(f'mtls_cert_not_after_timestamp_seconds{{job="{s}"}}')
            outcome: Outcome = "ok"
            details: dict[str, Any] = {
                "value": value.value,
                "scraped_at": scraped_at,
                "not_after": _not_after(ident.cert).timestamp(),
                "not_after_timestamp_metric": absolute,
                "served_serial": info[0].labels.get("serial") if info else None,
                "agent_serial": ident.serial,
            }
        except (PrometheusError, ValueError) as e:
            outcome, details = "unknown", {"error": str(e)}
        ops.append(history.record("m4.metrics", "prometheus", "query", s, outcome, start, kind="expiry", **details))
    _assert_all(ops, checks_m4.prometheus_saw)


def _collect(lab: RunningLab, dest: Path) -> dict[str, Path]:
    """Every log of the run so far, by file name without .log."""
    return {log_evidence.component_of(p): p for p in lab.collect_logs(dest)}


def _log(logs: dict[str, Path], component: str) -> tuple[str, list[dict[str, Any]]]:
    for name in LOG_NAMES.get(component, (component,)):
        if name in logs:
            return name, log_evidence.events(logs[name].read_text(errors="replace"))
    return component, []


def test_events_are_logged_with_their_serials(lab: RunningLab, history: History, story: Story) -> None:
    client_cert = story.client.cert
    expectations: list[tuple[str, str, str, str, dict[str, Any]]] = [  # kind, target, log, event, fields
        (
            "issuance",
            "m4-client",
            "zt-ra",
            "issued",
            {
                "serial": story.client.serial,
                "spiffe_id": story.client.spiffe_id,
                "via": "token",
                "actor": "m4-client",
                "not_after": _rfc3339(_not_after(client_cert)),
            },
        ),
        (
            "revocation",
            "m4-client",
            "ztca",
            "revoked",
            {"serials": [story.revoked_serial], "actor": "ztca", "crl_number": story.crl_number},
        ),
    ]
    for s in STACKS:
        old, new = story.rotations[s]
        expectations.append(
            ("rotation", s, f"agent-{s}", "rotation", {"old_serial": old, "new_serial": new, "service": s})
        )
        expectations.append(("rotation", s, s, "rotation", {"old_serial": old, "new_serial": new}))
        expectations.append(
            (
                "rejected_handshake",
                s,
                s,
                "handshake_rejected",
                {"reason": "revoked", "peer_serial": story.revoked_serial},
            )
        )
    start = time.time()
    deadline = time.monotonic() + 10  # lines written after the answer (a rejection after its alert)
    while True:
        logs = _collect(lab, lab.work_dir / "m4-logs" / "events")
        missing = [e for e in expectations if not log_evidence.find(_log(logs, e[2])[1], e[3], **e[4])]
        if not missing or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    ops = []
    for kind, target, log, event, want in expectations:
        name, docs = _log(logs, log)
        ops.append(
            history.record(
                "m4.events",
                log,
                "log",
                target,
                "ok",
                start,
                kind=kind,
                log=name,
                event=event,
                expected=want,
                seen=[d for d in docs if d.get("event") == event][-50:],
            )
        )
    _assert_all(ops, checks_m4.event_logged)
    assert checks_m4.events_whole(ops) == []


def test_every_log_line_follows_the_schema(lab: RunningLab, history: History, story: Story) -> None:
    start = time.time()
    logs = lab.collect_logs(lab.work_dir / "m4-logs" / "schema")
    ops = []
    for log in log_evidence.zt_logs(logs):
        components = sorted({str(d.get("component")) for d in log_evidence.events(log.read_text(errors="replace"))})
        try:
            r = log_evidence.validate(log)
        except ImportError as e:  # no schema in this tree: no evidence, never a pass
            ops.append(
                history.record(
                    "m4.log_schema",
                    "jsonschema",
                    "validate",
                    log.name,
                    "unknown",
                    start,
                    error=f"zt.logschema unavailable: {e}",
                    components=components,
                )
            )
            continue
        ops.append(
            history.record(
                "m4.log_schema",
                "jsonschema",
                "validate",
                log.name,
                "ok" if not r.errors else "fail",
                start,
                lines=r.lines,
                errors=list(r.errors),
                components=components,
            )
        )
    assert all(o.outcome != "unknown" for o in ops), ops[0].details.get("error")
    _assert_all(ops, checks_m4.lines_valid)
    assert checks_m4.schema_whole(ops) == []


def _audit_serials(text: str, actions: tuple[str, ...]) -> list[str]:
    out = []
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(doc, dict)
            and doc.get("action") in actions
            and doc.get("outcome", "ok") == "ok"
            and doc.get("subject")
        ):
            out.append(str(doc["subject"]))
    return out


def test_audit_log_verifies_and_matches_the_ca(lab: RunningLab, history: History, story: Story) -> None:
    start = time.time()
    code, output = lab.ztca_exit("audit", "verify", "--ca", CA_DIR)
    ops = [
        history.record(
            "m4.audit",
            "ztca",
            "audit verify",
            "audit.jsonl",
            "ok" if code == 0 else "fail",
            start,
            kind="verify",
            exit_code=code,
            output=output[-2000:],
        )
    ]
    start = time.time()
    certs = lab.ztca("list")["certificates"]
    try:
        text = lab.ca_file("audit.jsonl").decode(errors="replace")
        outcome: Outcome = "ok"
    except (OSError, KeyError, Exception) as e:  # noqa: BLE001 - no audit file is evidence too
        text, outcome = "", "fail"
        progress(f"m4: no audit.jsonl: {e}")
    ops.append(
        history.record(
            "m4.audit",
            "ztca",
            "read",
            "audit.jsonl",
            outcome,
            start,
            kind="entries",
            lines=len(text.splitlines()),
            ca_issued=[c["serial"] for c in certs],
            ca_revoked=[c["serial"] for c in certs if c.get("revoked")],
            audit_issued=_audit_serials(text, ("issue", "renew")),
            audit_revoked=_audit_serials(text, ("revoke",)),
        )
    )
    _assert_all(ops, checks_m4.audit_holds)


def test_no_secret_in_any_log(lab: RunningLab, history: History, story: Story) -> None:
    start = time.time()
    secrets = lab.secrets()
    kinds = {
        "key": sum(any(k in s.where for k in ("key.pem", ".key")) for s in secrets),
        "token": sum("token" in s.where for s in secrets),
        "keystore_password": sum("keystore.pass" in s.where for s in secrets),
    }
    ops = []
    for log in lab.collect_logs(lab.work_dir / "m4-logs" / "secrets"):
        leaked = secrets_scan.leaks(log.read_text(errors="replace"), secrets)
        ops.append(
            history.record(
                "m4.no_secrets",
                "grep",
                "scan",
                log.name,
                "ok" if not leaked else "fail",
                start,
                leaked=leaked,
                secrets=len(secrets),
                secret_kinds=kinds,
            )
        )
    _assert_all(ops, checks_m4.no_leak)
    assert checks_m4.secrets_whole(ops) == []


def test_report_plots_and_answers_from_prometheus(
    lab: RunningLab, prom: Prometheus, figures: Figures, story: Story
) -> None:
    """Figures, not verdicts: two range plots and a few instant answers, as a person would ask."""
    window = (story.start - 10, time.time())
    runtime = lab.runtime_name
    prometheus_plots.plot_range(
        figures,
        4,
        prom,
        "sum by (job, result) (rate(mtls_handshakes_total[3s]))",
        window,
        step=1,
        title=f"mTLS handshakes per second by result ({runtime})",
        ylabel="handshakes/s",
        file=f"m4-handshakes-{runtime}.png",
        origin=story.start,
        label=lambda m: f"{m.get('job')} {m.get('result')}",
    )
    prometheus_plots.plot_range(
        figures,
        4,
        prom,
        "mtls_cert_expiry_seconds",
        window,
        step=1,
        title=f"served certificate: seconds until expiry ({runtime})",
        ylabel="seconds",
        file=f"m4-cert-expiry-{runtime}.png",
        origin=story.start,
        label=lambda m: str(m.get("job")),
    )
    answers = [list(a) for a in prometheus_answers(prom, FIRST_QUESTIONS)]
    figures.table(4, f"PromQL answers at the end of the scenario ({runtime})", ["query", "series", "value"], answers)
    figures.figure(4, f"promql_answers_{runtime}", len(answers))
    assert answers, "Prometheus answered nothing"
