"""A chaos run's evidence as history: the load's requests, the agents' logs and the nemesis's
faults, cut into operations per plan criterion (zt.lab.checks_chaos judges them).

Every plan owns a slot of the run (zt.lab.chaos_plan); a plan's criteria see the requests that
started in its slot and the faults of its slot, with the fault windows as the nemesis recorded
them (applied and healed on the wall clock, not as scheduled). A fault that was never applied
or never healed gives its plan's window-based operations the outcome "unknown": no window,
no verdict.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from zt.errors import ConfigError
from zt.lab import load
from zt.lab.chaos_plan import Slot
from zt.lab.chaos_revocation import RevocationWatch
from zt.lab.history import Operation, Outcome
from zt.lab.nemesis import Applied
from zt.lab.rotations import Generation, log_events

# After a heal, how long the agents get to renew (their backoff is capped at a tenth of the
# time left, ~2 s in the chaos lab, plus a renewal's round trip on a loaded machine).
RENEW_AFTER_HEAL_S = 10.0
# A request that started this close before a heal may still meet the fault; one started this
# long after it must not.
HEAL_GRACE_S = 1.0
# service-a's upstream handshake timeout (native/cpp/src/outbound.h) and the slack a /call that
# fails gets on top on a loaded machine (8.2 s seen with two labs at once), still below the
# load's own 10 s timeout: "never hangs past its timeout".
CALL_FAIL_BOUND_S = 5.0 + 4.0
UPSTREAM_ERRORS = ("upstream_error", "upstream_timeout", "upstream_tls")
# A whole generation, as zt.agent.writer.CertDirWriter writes one (docs/contracts.md section 2).
GENERATION_FILES = ("key.pem", "cert.pem", "chain.pem", "bundle.pem", "keystore.p12", "truststore.p12", "svid.json")


@dataclass(frozen=True)
class Evidence:
    """Everything a run observed, for every plan: the load's requests, the agents' logs and the
    generations in them, the agents' certificate directories, plan 3's revocation probes."""

    records: Sequence[dict[str, Any]]
    agent_logs: dict[str, str]
    generations: dict[str, list[Generation]]
    cert_dirs: dict[str, Path]
    t0: float  # when the load started (the schedule's zero)
    watch: RevocationWatch | None = None
    store: dict[str, Any] | None = None  # plan 6a: zt.lab.chaos_store.store_evidence after the run


def _start(r: dict[str, Any]) -> float:
    return float(r.get("start") or 0.0)


def in_slot(records: Sequence[dict[str, Any]], slot_begin: float, slot_end: float) -> list[dict[str, Any]]:
    return [r for r in records if slot_begin <= _start(r) < slot_end]


def _request_op(criterion: str, r: dict[str, Any], end_fallback: float, **extra: Any) -> Operation:
    op = load.to_operations([r], criterion, end_fallback)[0]
    if extra:
        op = Operation(op.criterion, op.actor, op.op, op.target, op.outcome, op.start, op.end, {**op.details, **extra})
    return op


def slot_requests(criterion: str, slot: Slot, ev: Evidence) -> list[Operation]:
    """Every request of a slot, each one to succeed (its offset from the load's start added)."""
    begin, end = ev.t0 + slot.begin, ev.t0 + slot.end
    return [_request_op(criterion, r, end, at_s=round(_start(r) - ev.t0, 2)) for r in in_slot(ev.records, begin, end)]


def is_call(r: dict[str, Any], caller: str, callee: str) -> bool:
    return r.get("kind") == "call" and r.get("target") == caller and r.get("callee") == callee


def renewal_failures(log_text: str) -> list[float]:
    """When the agent logged `renewal_failed` (unix time)."""
    out = []
    for e in log_events(log_text):
        if e.get("event") == "renewal_failed":
            try:
                out.append(dt.datetime.fromisoformat(str(e["ts"]).replace("Z", "+00:00")).timestamp())
            except (KeyError, ValueError):
                continue
    return out


def renewal_ops(criterion: str, applied: Sequence[Applied], ev: Evidence, min_failures: int) -> list[Operation]:
    """Per agent and fault: the renewal attempts that failed inside the fault window (the fault
    met a due renewal; `min_failures` of them show the retry), and the first new generation
    after the heal."""
    ops = []
    for service, text in ev.agent_logs.items():
        for a in applied:
            window = a.window
            details: dict[str, Any] = {
                "service": service,
                "fault": a.scheduled.id,
                "bound_s": RENEW_AFTER_HEAL_S,
                "min_failures": min_failures,
            }
            if window is None:
                details["error"] = "the fault was never applied and healed"
                ops.append(Operation(criterion, f"agent-{service}", "renewal", service, "unknown", 0.0, 0.0, details))
                continue
            fails = [t for t in renewal_failures(text) if window[0] <= t <= window[1] + HEAL_GRACE_S]
            after = [g.written_at for g in ev.generations.get(service, []) if g.written_at >= window[1]]
            details.update(
                window=[window[0], window[1]],
                failures_in_window=len(fails),
                failure_offsets_s=[round(t - window[0], 2) for t in fails],
                first_write_after_heal_s=round(after[0] - window[1], 2) if after else None,
            )
            end = after[0] if after else window[1]
            ops.append(Operation(criterion, f"agent-{service}", "renewal", service, "ok", window[0], end, details))
    return ops


def ra_down_ops(slot: Slot, applied: Sequence[Applied], ev: Evidence) -> list[Operation]:
    """Plan 1: every request of the slot succeeds; every agent met the outage while a renewal
    was due (renewal_failed inside the window, and retried), and renewed soon after the heal."""
    ops = slot_requests("chaos.ra_down.no_failed_requests", slot, ev)
    return ops + renewal_ops("chaos.ra_down.renewed_after_heal", applied, ev, 2)


def ra_slow_ops(slot: Slot, applied: Sequence[Applied], ev: Evidence) -> list[Operation]:
    """Plan 2: as plan 1 (an attempt that timed out is enough: each takes the agent's whole
    timeout), and every agent's certificate directory is whole afterwards."""
    ops = slot_requests("chaos.ra_slow.no_failed_requests", slot, ev)
    ops += renewal_ops("chaos.ra_slow.renewed_after_heal", applied, ev, 1)
    return ops + [cert_dir_op("chaos.ra_slow.cert_dirs_whole", service, out) for service, out in ev.cert_dirs.items()]


def cert_dir_op(criterion: str, service: str, out: Path | None) -> Operation:
    """An agent's certificate directory as read from outside now (cert_dir_problems)."""
    now = time.time()
    problems = cert_dir_problems(out) if out is not None else [f"no certificate directory for {service}"]
    gens = sorted(p.name for p in out.glob("gen-*")) if out is not None else []
    details = {"service": service, "generations": gens, "problems": problems}
    return Operation(criterion, "lab", "inspect", service, "ok", now, now, details)


def cert_dir_problems(out: Path) -> list[str]:
    """What is wrong with an agent's certificate directory, read from outside as the services
    read it (docs/contracts.md section 2): `current` must resolve to a generation, and every
    generation kept must be whole (all files; the key matching the leaf; svid.json naming the
    leaf's serial): no half-written generation, no key of one renewal next to the certificate
    of another."""
    problems = []
    current = out / "current"
    if not current.is_symlink() or not current.resolve().is_dir():
        problems.append("current does not resolve to a generation")
    for gdir in sorted(out.glob("gen-*")):
        missing = [f for f in GENERATION_FILES if not (gdir / f).is_file()]
        if missing:
            problems.append(f"{gdir.name}: missing {', '.join(missing)}")
            continue
        try:
            key = serialization.load_pem_private_key((gdir / "key.pem").read_bytes(), None)
            chain = x509.load_pem_x509_certificates((gdir / "chain.pem").read_bytes())
            serial = json.loads((gdir / "svid.json").read_text())["serial"]
        except (OSError, ValueError, TypeError, KeyError) as e:
            problems.append(f"{gdir.name}: unreadable: {type(e).__name__}: {e}")
            continue
        if chain[0].public_key().public_bytes(*_SPKI) != key.public_key().public_bytes(*_SPKI):
            problems.append(f"{gdir.name}: key.pem does not match the certificate")
        if format(chain[0].serial_number, "x") != str(serial).lower().lstrip("0"):
            problems.append(f"{gdir.name}: svid.json names serial {serial}, the certificate {chain[0].serial_number:x}")
    return problems


_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _caller_callee(slot: Slot) -> tuple[str, str]:
    caller, _, callee = slot.plan.faults[0].edge.partition("->")
    return caller, callee


def mesh_latency_ops(slot: Slot, applied: Sequence[Applied], ev: Evidence) -> list[Operation]:
    """Plan 4: every request succeeds; /call caller->callee is slower by about the injected
    latency (medians before the fault vs inside it); both agents rotated under the latency."""
    caller, callee = _caller_callee(slot)
    edge = f"{caller}->{callee}"
    begin, end = ev.t0 + slot.begin, ev.t0 + slot.end
    mine = in_slot(ev.records, begin, end)
    ops = slot_requests("chaos.mesh_latency.no_failed_requests", slot, ev)
    for a in applied:
        w = a.window
        attrs = a.scheduled.fault.attributes
        details: dict[str, Any] = {
            "fault": a.scheduled.id,
            "latency_ms": attrs.get("latency"),
            "jitter_ms": attrs.get("jitter"),
        }

        def rises(outcome: Outcome, start: float, stop: float, d: dict[str, Any]) -> Operation:
            return Operation("chaos.mesh_latency.latency_rises", "nemesis", "latency", edge, outcome, start, stop, d)

        if w is None:
            ops.append(rises("unknown", begin, end, {**details, "error": "the fault was never applied and healed"}))
            continue
        calls = [r for r in mine if is_call(r, caller, callee) and load.request_succeeded(r)]
        before = [m for r in calls if _start(r) < w[0] and (m := load.request_ms(r)) is not None]
        during = [
            m
            for r in calls
            if w[0] + HEAL_GRACE_S <= _start(r) and float(r["end"]) <= w[1] and (m := load.request_ms(r)) is not None
        ]
        details.update(
            calls_before=len(before),
            calls_during=len(during),
            median_before_ms=round(statistics.median(before), 1) if before else None,
            median_during_ms=round(statistics.median(during), 1) if during else None,
        )
        enough = len(before) >= 5 and len(during) >= 5
        too_few = {**details, "error": "fewer than 5 calls before or during the fault"}
        ops.append(rises("ok", w[0], w[1], details) if enough else rises("unknown", w[0], w[1], too_few))
        for service, gens in ev.generations.items():
            rotated = [g for g in gens if g.is_rotation and w[0] <= g.written_at <= w[1]]
            ops.append(
                Operation(
                    "chaos.mesh_latency.rotations_under_latency",
                    f"agent-{service}",
                    "rotation",
                    service,
                    "ok",
                    w[0],
                    w[1],
                    {"fault": a.scheduled.id, "rotations": len(rotated), "serials": [g.new_serial for g in rotated]},
                )
            )
    return ops


def mesh_fault_ops(slot: Slot, applied: Sequence[Applied], ev: Evidence) -> list[Operation]:
    """Plan 5: inside a fault window, /call caller->callee either succeeds or fails with a clear
    502/504 naming the upstream error, quickly; every other request of the slot succeeds; after
    each heal the calls succeed again."""
    caller, callee = _caller_callee(slot)
    t0, begin, end = ev.t0, ev.t0 + slot.begin, ev.t0 + slot.end
    mine = in_slot(ev.records, begin, end)
    windows = [(a, a.window) for a in applied]
    ops: list[Operation] = []
    if any(w is None for _, w in windows):
        ops.append(
            Operation(
                "chaos.mesh_faults.confined",
                "nemesis",
                "window",
                f"{caller}->{callee}",
                "unknown",
                begin,
                end,
                {"error": "a fault was never applied and healed"},
            )
        )
        return ops

    def window_of(r: dict[str, Any]) -> Applied | None:
        for a, w in windows:
            assert w is not None
            # In flight at any moment of the window: a request the fault met midway may fail too.
            if _start(r) <= w[1] + HEAL_GRACE_S and float(r.get("end") or _start(r)) >= w[0]:
                return a
        return None

    for r in mine:
        a = window_of(r) if is_call(r, caller, callee) else None
        if a is not None:
            ops.append(
                _request_op(
                    "chaos.mesh_faults.clear_errors",
                    r,
                    end,
                    fault=a.scheduled.id,
                    toxic=a.scheduled.fault.toxic,
                    at_s=round(_start(r) - t0, 2),
                )
            )
        else:
            ops.append(_request_op("chaos.mesh_faults.confined", r, end, at_s=round(_start(r) - t0, 2)))
    for i, (a, w) in enumerate(windows):
        assert w is not None
        until = windows[i + 1][1][0] if i + 1 < len(windows) and windows[i + 1][1] else end  # type: ignore[index]
        # Started after the heal, and over before the next fault of the plan was applied.
        after = [
            r
            for r in mine
            if is_call(r, caller, callee) and w[1] + HEAL_GRACE_S < _start(r) and float(r.get("end") or end) < until
        ]
        ops.append(
            Operation(
                "chaos.mesh_faults.recovers",
                "nemesis",
                "heal",
                f"{caller}->{callee}",
                "ok",
                w[1],
                until,
                {
                    "fault": a.scheduled.id,
                    "calls_after_heal": len(after),
                    "ok_after_heal": sum(load.request_succeeded(r) for r in after),
                    "failed_after_heal": [
                        f"{r.get('id')} at {_start(r) - w[1]:.1f}s after the heal: {r.get('status')} {r.get('error')}"
                        for r in after
                        if not load.request_succeeded(r)
                    ][:10],
                },
            )
        )
    return ops


# After the publisher's heal, how long a revocation gets to reach the services: the agents'
# CRL poll after an error (1 s in the lab), the fetch, the write and the services' reload.
REVOKED_AFTER_HEAL_S = 10.0


def crl_down_ops(slot: Slot, applied: Sequence[Applied], ev: Evidence) -> list[Operation]:
    """Plan 3: per service, what the probes of the revoked certificate saw around the heal."""
    watch = ev.watch
    ops = []
    a = applied[0] if applied else None
    window = a.window if a is not None else None
    for service in watch.services if watch is not None else []:
        details: dict[str, Any] = {"service": service, "bound_s": REVOKED_AFTER_HEAL_S}
        if watch is None or window is None or watch.revoked_at is None:
            why = watch.revoke_error if watch is not None and watch.revoke_error else "no fault window or no revocation"
            ops.append(
                Operation(
                    "chaos.crl_down.revoked_after_heal",
                    "lab",
                    "probe",
                    service,
                    "unknown",
                    0.0,
                    0.0,
                    {**details, "error": why},
                )
            )
            continue
        mine = [p for p in watch.probes if p.service == service]
        healed = window[1]
        refused_after = [p for p in mine if p.at >= healed and not p.accepted]
        first_refused = refused_after[0] if refused_after else None
        details.update(
            revoked_at=watch.revoked_at,
            revoked_before_heal_s=round(healed - watch.revoked_at, 2),
            healed_at=healed,
            probes=len(mine),
            accepted_before_heal=sum(p.accepted for p in mine if p.at < healed),
            answers_before_heal=sorted({f"{p.status}/{p.error}/{p.reason}" for p in mine if p.at < healed}),
            first_refused_after_heal_s=round(first_refused.at - healed, 2) if first_refused else None,
            refused_with=f"{first_refused.error}/{first_refused.reason}" if first_refused else None,
            accepted_after_refusal=sum(p.accepted for p in mine if first_refused and p.at > first_refused.at),
            last_probe_after_heal_s=round(mine[-1].at - healed, 2) if mine else None,
        )
        ops.append(
            Operation(
                "chaos.crl_down.revoked_after_heal",
                "lab",
                "probe",
                service,
                "ok",
                watch.revoked_at,
                mine[-1].at if mine else healed,
                details,
            )
        )
    return ops


def ra_kill_ops(slot: Slot, applied: Sequence[Applied], ev: Evidence) -> list[Operation]:
    """Plan 6a: the RA killed by SIGKILL while certificates are due, then restarted on its store:
    every request of the slot succeeds; every agent's renewal failed while it was dead and
    succeeded soon after the restart; the store is whole (zt.lab.chaos_store)."""
    ops = slot_requests("chaos.ra_kill.no_failed_requests", slot, ev)
    ops += renewal_ops("chaos.ra_kill.renewed_after_heal", applied, ev, 1)
    now = time.time()
    if ev.store is None:
        ops.append(
            Operation(
                "chaos.ra_kill.store_whole", "lab", "inspect", "store", "unknown", now, now, {"error": "no store read"}
            )
        )
    else:
        ops.append(Operation("chaos.ra_kill.store_whole", "lab", "inspect", "store", "ok", now, now, dict(ev.store)))
    return ops


def agent_kill_ops(slot: Slot, applied: Sequence[Applied], ev: Evidence) -> list[Operation]:
    """Plan 6b: an agent killed by SIGKILL while it wrote a generation, then restarted: its
    service kept serving (every request of the slot succeeds), the kill landed mid-write (the
    generation it met lacked files), the restarted agent renewed within the bound, and its
    certificate directory is whole afterwards (the check of plan 2, from outside)."""
    ops = slot_requests("chaos.agent_kill.no_failed_requests", slot, ev)
    now = time.time()
    for a in applied:
        service = a.scheduled.fault.edge.removeprefix("agent-")
        proc = a.process
        details: dict[str, Any] = {
            "fault": a.scheduled.id,
            "service": service,
            "writing": proc.get("writing"),
            "files_at_kill": proc.get("files_at_kill"),
            "generation_files": list(GENERATION_FILES),
        }
        outcome: Outcome = "ok" if a.applied_at is not None else "unknown"
        start = a.applied_at or now
        ops.append(Operation("chaos.agent_kill.mid_write", "nemesis", "kill", service, outcome, start, start, details))
        victim = Evidence(ev.records, {service: ev.agent_logs.get(service, "")}, ev.generations, ev.cert_dirs, ev.t0)
        ops += renewal_ops("chaos.agent_kill.renewed_after_restart", [a], victim, 0)
        ops.append(cert_dir_op("chaos.agent_kill.cert_dir_whole", service, ev.cert_dirs.get(service)))
    return ops


def failovers(log_text: str) -> list[tuple[float, str, str]]:
    """The agent's `ra_failover` events: (unix time, the replica that failed, the next one)."""
    out = []
    for e in log_events(log_text):
        if e.get("event") == "ra_failover":
            try:
                at = dt.datetime.fromisoformat(str(e["ts"]).replace("Z", "+00:00")).timestamp()
            except (KeyError, ValueError):
                continue
            out.append((at, str(e.get("ra")), str(e.get("next_ra"))))
    return out


def replica_kill_ops(slot: Slot, applied: Sequence[Applied], ev: Evidence) -> list[Operation]:
    """Replica kill (issue 16): one of two RA replicas on PostgreSQL killed by SIGKILL during
    renewals under load: every request of the slot succeeds; every agent logged `ra_failover`
    while it was dead and wrote a new generation during the outage (through the other replica);
    the store holds every serial any agent was given, none twice (zt.lab.chaos_store)."""
    ops = slot_requests("chaos.replica_kill.no_failed_requests", slot, ev)
    for service, text in ev.agent_logs.items():
        for a in applied:
            w = a.window
            details: dict[str, Any] = {"service": service, "fault": a.scheduled.id}
            if w is None:
                details["error"] = "the fault was never applied and healed"
                ops.append(
                    Operation(
                        "chaos.replica_kill.failed_over",
                        f"agent-{service}",
                        "failover",
                        service,
                        "unknown",
                        0,
                        0,
                        details,
                    )
                )
                continue
            moved = [f for f in failovers(text) if w[0] <= f[0] <= w[1] + HEAL_GRACE_S]
            written = [g for g in ev.generations.get(service, []) if w[0] <= g.written_at <= w[1]]
            details.update(
                window=[w[0], w[1]],
                failovers=len(moved),
                failover_offsets_s=[round(f[0] - w[0], 2) for f in moved],
                replicas_failed=sorted({f[1] for f in moved}),
                written_during=len(written),
                serials_during=[g.new_serial for g in written],
            )
            ops.append(
                Operation(
                    "chaos.replica_kill.failed_over", f"agent-{service}", "failover", service, "ok", w[0], w[1], details
                )
            )
    now = time.time()
    outcome: Outcome = "ok" if ev.store is not None else "unknown"
    details = dict(ev.store) if ev.store is not None else {"error": "no store read"}
    ops.append(Operation("chaos.replica_kill.store_whole", "lab", "inspect", "store", outcome, now, now, details))
    return ops


# Each plan's evidence -> operations, by the plan file's name. A plan without an entry here has
# no criteria: plan_operations refuses it rather than let it pass by judging nothing.
PLAN_OPERATIONS: dict[str, Callable[[Slot, Sequence[Applied], Evidence], list[Operation]]] = {
    "ra-down": ra_down_ops,
    "ra-slow": ra_slow_ops,
    "crl-down-revocation": crl_down_ops,
    "mesh-latency": mesh_latency_ops,
    "mesh-reset": mesh_fault_ops,
    "ra-kill": ra_kill_ops,
    "agent-kill": agent_kill_ops,
    "replica-kill": replica_kill_ops,
}


def plan_operations(slot: Slot, applied: Sequence[Applied], ev: Evidence) -> list[Operation]:
    try:
        build = PLAN_OPERATIONS[slot.plan.name]
    except KeyError:
        raise ConfigError(f"plan {slot.plan.name} has no criteria (zt.lab.chaos_history.PLAN_OPERATIONS)") from None
    return build(slot, applied, ev)
