"""The chaos run's criteria: what each fault plan must show (docs/chaos.md).

Operations come from zt.lab.chaos_history (requests and agent evidence cut per plan slot) and
zt.lab.nemesis (every fault and its heal). As everywhere in the lab, a criterion with no
operations, or an operation without a verdict (a fault never applied or never healed, too few
calls to compare), is UNKNOWN, and the run fails. Each criterion also demands that its fault
*bit*: a plan whose fault missed its target (no renewal was due while the RA was down, no call
failed while the upstream was reset) proves nothing, and says so as a violation.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence

from zt.lab.chaos_history import CALL_FAIL_BOUND_S, UPSTREAM_ERRORS
from zt.lab.checkers import Criterion
from zt.lab.history import Operation
from zt.lab.load import request_succeeded

MILESTONE = 6  # the chaos run's number in reports; it is selected by name (zt-lab run --milestone chaos)
HEAL_LATE_S = 2.0  # a heal this much after its scheduled time was not the plan's heal (stop() healed it)


def healed_on_schedule(o: Operation) -> str | None:
    """The fault was applied, healed on time, and toxiproxy then showed the edge clean."""
    d = o.details
    if d.get("apply_error"):
        return f"fault {d['fault']} could not be applied: {d['apply_error']}"
    if d.get("heal_error"):
        return f"fault {d['fault']} was not healed: {d['heal_error']}"
    if d.get("toxic") == "kill":
        return restarted_on_schedule(o)
    late = float(d["healed_at"]) - float(d["scheduled_heal"])
    if late > HEAL_LATE_S:
        return f"fault {d['fault']} healed {late:.1f}s after its heal step was due"
    after = d.get("after_heal") or {}
    if after.get("enabled") is not True or after.get("toxics"):
        return f"after the heal of {d['fault']} toxiproxy shows proxy {d['proxy']} as {after}"
    return None


def restarted_on_schedule(o: Operation) -> str | None:
    """A kill fault: the component died of SIGKILL, its restart began on time, and a new process
    (another PID, alive) answered after it."""
    d = o.details
    proc, after = d.get("process") or {}, d.get("after_heal") or {}
    if proc.get("exit_code") != -signal.SIGKILL:
        who = f"{proc.get('component')} (pid {proc.get('killed_pid')})"
        return f"fault {d['fault']}: {who} exited with {proc.get('exit_code')}, not by SIGKILL"
    late = float(d.get("heal_started_at") or d["healed_at"]) - float(d["scheduled_heal"])
    if late > HEAL_LATE_S:
        return f"fault {d['fault']}: restart began {late:.1f}s after its heal step was due"
    if after.get("alive") is not True or after.get("pid") in (None, proc.get("killed_pid")):
        return f"fault {d['fault']}: after the restart {proc.get('component')} shows {after}"
    return None


def request_ok(o: Operation) -> str | None:
    """One load request: 200 (for /call, the upstream's 200 too)."""
    r = o.details
    if request_succeeded(r):
        return None
    body = r.get("body") or {}
    return (
        f"request {r.get('id')} ({r.get('kind')} {r.get('target')}{str(r.get('path', '')).split('?')[0]}"
        f" at +{r.get('at_s')}s) failed: status {r.get('status')} {r.get('error') or ''} "
        f"{body.get('error', '')} {str(body.get('reason') or r.get('detail') or '')[:160]}"
    ).rstrip()


def every_service_loaded(ops: Sequence[Operation]) -> list[str]:
    """The slot saw load on every service (so "no request failed" is about something)."""
    targets = {str(o.details.get("target")) for o in ops}
    return [] if len(targets) >= 2 else [f"requests reached only {sorted(targets)}: the load missed a service"]


def renewed_after_heal(o: Operation) -> str | None:
    """The agent met the fault with a renewal due (failed attempts inside the window: for an
    outage at least two, one and its retry), and wrote a new generation within the bound after
    the heal."""
    d = o.details
    why = []
    if d["failures_in_window"] < d["min_failures"]:
        why.append(
            f"{d['failures_in_window']} failed renewal attempts during the fault, need {d['min_failures']} "
            "(the fault must meet a due renewal, and in an outage its retry)"
        )
    first = d["first_write_after_heal_s"]
    if first is None:
        why.append("no new certificate after the heal")
    elif first > d["bound_s"]:
        why.append(f"renewed {first}s after the heal, bound {d['bound_s']}s")
    return f"{d['service']}: {'; '.join(why)}" if why else None


def latency_rises(o: Operation) -> str | None:
    """The median /call latency inside the fault rose by at least the injected latency minus its
    jitter, and by at most four times latency plus jitter (the upstream's TLS handshake and its
    response each cross the toxic once: about twice the injected latency)."""
    d = o.details
    lat, jit = int(d["latency_ms"]), int(d["jitter_ms"])
    rise = float(d["median_during_ms"]) - float(d["median_before_ms"])
    if rise < lat - jit:
        return f"median /call latency rose by {rise:.0f} ms, less than the injected {lat}-{jit} ms"
    if rise > 4 * (lat + jit):
        return f"median /call latency rose by {rise:.0f} ms, more than 4 x ({lat}+{jit}) ms"
    return None


def rotated_under_latency(o: Operation) -> str | None:
    d = o.details
    return None if d["rotations"] >= 1 else f"{o.target}: no rotation while the latency was on (nothing proven)"


def clear_upstream_error(o: Operation) -> str | None:
    """/call during the fault: a success, or a 502/504 whose body names the upstream error, in
    less than service-a's upstream timeout plus slack."""
    r = o.details
    seconds = float(r.get("end") or 0) - float(r.get("start") or 0)
    if request_succeeded(r):
        return None
    body = r.get("body") or {}
    if r.get("status") not in (502, 504):
        return f"request {r.get('id')}: status {r.get('status')} {r.get('error')}, not a 502/504 from the caller"
    if body.get("error") not in UPSTREAM_ERRORS or not body.get("reason"):
        return f"request {r.get('id')}: {r.get('status')} with body {body}: no named upstream error"
    if seconds > CALL_FAIL_BOUND_S:
        return f"request {r.get('id')}: failed after {seconds:.1f}s, past the {CALL_FAIL_BOUND_S}s bound"
    return None


def fault_bit(ops: Sequence[Operation]) -> list[str]:
    """Every fault of the plan made at least one call fail (or it proved nothing)."""
    faults = {str(o.details.get("fault")) for o in ops}
    bitten = {str(o.details.get("fault")) for o in ops if not request_succeeded(o.details)}
    return [f"fault {f}: no /call failed while it was on (nothing proven)" for f in sorted(faults - bitten)]


def recovered(o: Operation) -> str | None:
    d = o.details
    if d["calls_after_heal"] == 0:
        return f"fault {d['fault']}: no call after the heal to show recovery"
    if d["ok_after_heal"] != d["calls_after_heal"]:
        return f"fault {d['fault']}: calls failed after the heal: {d['failed_after_heal']}"
    return None


def revoked_after_heal(o: Operation) -> str | None:
    """The services accepted the revoked certificate while the publisher was down (the fault
    held the revocation back), refused it within the bound after the heal, and never again
    accepted it."""
    d = o.details
    if d["revoked_before_heal_s"] <= 0:
        return (
            f"{d['service']}: the revocation completed {-d['revoked_before_heal_s']}s after the heal: "
            "the fault did not cover it (nothing proven)"
        )
    if d["accepted_before_heal"] == 0:
        return (
            f"{d['service']}: never accepted the certificate between its revocation and the heal (answers "
            f"{d.get('answers_before_heal')}): the fault held nothing back, or the probe was refused for another reason"
        )
    first = d["first_refused_after_heal_s"]
    if first is None:
        return f"{d['service']}: still accepted the revoked certificate {d['last_probe_after_heal_s']}s after the heal"
    if first > d["bound_s"]:
        return f"{d['service']}: refused the revoked certificate {first}s after the heal, bound {d['bound_s']}s"
    if d["accepted_after_refusal"]:
        return f"{d['service']}: accepted the revoked certificate {d['accepted_after_refusal']} times after refusing it"
    return None


def cert_dir_whole(o: Operation) -> str | None:
    problems = o.details["problems"]
    return None if not problems else f"{o.target}: {'; '.join(problems)}"


def killed_mid_write(o: Operation) -> str | None:
    """The kill met a generation being written: the directory existed and lacked files then."""
    d = o.details
    if not d.get("writing"):
        return f"{d['service']}: the agent wrote no generation while the lab waited to kill it (nothing proven)"
    missing = [f for f in d["generation_files"] if f not in (d.get("files_at_kill") or [])]
    if not missing:
        return f"{d['service']}: {d['writing']} was complete when the kill landed (not mid-write)"
    return None


def failed_over(o: Operation) -> str | None:
    """While one replica was dead the agent moved to the other (`ra_failover`) and renewed
    through it: a fault that met no renewal proves nothing."""
    d = o.details
    why = []
    if d["failovers"] < 1:
        why.append("no ra_failover while the replica was dead")
    if d["written_during"] < 1:
        why.append("no new certificate while the replica was dead (renewal through the other replica)")
    return f"{d['service']}: {'; '.join(why)}" if why else None


def store_whole(o: Operation) -> str | None:
    """After the RA's kill and restart (zt.lab.chaos_store): the store is intact, holds every
    serial an agent was ever given, one certificate per spent token (and no token spent without
    one), no serial twice, and `ztca audit verify` passes."""
    d = o.details
    why = []
    if d["integrity"] not in ("ok", None):  # None: PostgreSQL, which has no integrity_check verb
        why.append(f"integrity_check: {d['integrity']}")
    if d["held_not_in_store"]:
        why.append(f"serials agents hold that the store lacks: {d['held_not_in_store']}")
    if d["held"] == 0:
        why.append("no serial held by any agent to look for (nothing proven)")
    if d["token_mismatch"]:
        why.append(f"tokens and certificates disagree: {d['token_mismatch']}")
    if d["duplicate_serials"]:
        why.append(f"serials issued twice: {d['duplicate_serials']}")
    if d["audit_verify_exit"] != 0:
        why.append(f"ztca audit verify exited {d['audit_verify_exit']}: {d['audit_verify_output']}")
    return "; ".join(why) or None


CHAOS = (
    Criterion(
        "chaos.faults_healed",
        MILESTONE,
        "every fault was applied and healed on schedule, and toxiproxy then showed the edge clean",
        healed_on_schedule,
    ),
    Criterion(
        "chaos.ra_down.no_failed_requests",
        MILESTONE,
        "plan 1, RA down while certificates are due: not one request of the load fails",
        request_ok,
        every_service_loaded,
    ),
    Criterion(
        "chaos.ra_down.renewed_after_heal",
        MILESTONE,
        "plan 1: every agent retried during the outage and renewed within the bound after the heal",
        renewed_after_heal,
    ),
    Criterion(
        "chaos.ra_slow.no_failed_requests",
        MILESTONE,
        "plan 2, RA slower than the agent's timeout during renewals: not one request fails",
        request_ok,
        every_service_loaded,
    ),
    Criterion(
        "chaos.ra_slow.renewed_after_heal",
        MILESTONE,
        "plan 2: every agent's renewal timed out during the fault, and it renewed within the bound after the heal",
        renewed_after_heal,
    ),
    Criterion(
        "chaos.ra_slow.cert_dirs_whole",
        MILESTONE,
        "plan 2: no agent ends with a half-written generation or a key that does not match its certificate",
        cert_dir_whole,
    ),
    Criterion(
        "chaos.crl_down.revoked_after_heal",
        MILESTONE,
        "plan 3, CRL publisher down across a revocation: the services refuse it within the bound after the heal",
        revoked_after_heal,
    ),
    Criterion(
        "chaos.mesh_latency.no_failed_requests",
        MILESTONE,
        "plan 4, service-a -> service-b latency: not one request fails, rotations included",
        request_ok,
        every_service_loaded,
    ),
    Criterion(
        "chaos.mesh_latency.latency_rises",
        MILESTONE,
        "plan 4: /call service-a -> service-b is slower by about the injected latency",
        latency_rises,
    ),
    Criterion(
        "chaos.mesh_latency.rotations_under_latency",
        MILESTONE,
        "plan 4: every agent rotated while the latency was on",
        rotated_under_latency,
    ),
    Criterion(
        "chaos.mesh_faults.clear_errors",
        MILESTONE,
        "plan 5, service-a -> service-b reset/blackhole: /call fails with a clear 502/504 naming the upstream error",
        clear_upstream_error,
        fault_bit,
    ),
    Criterion(
        "chaos.mesh_faults.confined",
        MILESTONE,
        "plan 5: every request outside the fault windows (and every other edge inside them) succeeds",
        request_ok,
    ),
    Criterion(
        "chaos.mesh_faults.recovers",
        MILESTONE,
        "plan 5: after each heal the calls succeed again",
        recovered,
    ),
)

# The kill run (`zt-lab run --milestone kills`; chaos plan 6, issue 14): the nemesis SIGKILLs the
# RA during renewals under load and an agent in the middle of writing a generation, and restarts
# each. A run of its own because the kills are process faults, built on the process runtime
# only so far (the container runtime refuses them, docs/chaos.md); plans 1-5 run on both.
MILESTONE_KILLS = 8
KILLS = (
    Criterion(
        "chaos.faults_healed",
        MILESTONE_KILLS,
        "every fault was applied and healed on schedule (a killed component restarted and answered)",
        healed_on_schedule,
    ),
    Criterion(
        "chaos.ra_kill.no_failed_requests",
        MILESTONE_KILLS,
        "plan 6a, RA killed (SIGKILL) while certificates are due, then restarted: not one request fails",
        request_ok,
        every_service_loaded,
    ),
    Criterion(
        "chaos.ra_kill.renewed_after_heal",
        MILESTONE_KILLS,
        "plan 6a: every agent's renewal failed while the RA was dead, and renewed within the bound after the restart",
        renewed_after_heal,
    ),
    Criterion(
        "chaos.ra_kill.store_whole",
        MILESTONE_KILLS,
        "plan 6a: after the restart the store holds every serial an agent holds, one certificate per spent token, "
        "and ztca audit verify passes",
        store_whole,
    ),
    Criterion(
        "chaos.agent_kill.no_failed_requests",
        MILESTONE_KILLS,
        "plan 6b, an agent killed (SIGKILL) mid-write, then restarted: its service keeps serving, no request fails",
        request_ok,
        every_service_loaded,
    ),
    Criterion(
        "chaos.agent_kill.mid_write",
        MILESTONE_KILLS,
        "plan 6b: the kill landed while the agent wrote a generation (the generation lacked files)",
        killed_mid_write,
    ),
    Criterion(
        "chaos.agent_kill.renewed_after_restart",
        MILESTONE_KILLS,
        "plan 6b: the restarted agent wrote a new generation within the bound",
        renewed_after_heal,
    ),
    Criterion(
        "chaos.agent_kill.cert_dir_whole",
        MILESTONE_KILLS,
        "plan 6b: after the restart the certificate directory is whole: current resolves, every generation "
        "kept is complete with a key matching its certificate",
        cert_dir_whole,
    ),
)

# The replica run (`zt-lab run --milestone replicas --store postgres`; issue 16): the nemesis
# kills one of two RA replicas on PostgreSQL (chaos/replica-kill.json).
MILESTONE_REPLICAS = 7
REPLICAS = (
    Criterion(
        "chaos.faults_healed",
        MILESTONE_REPLICAS,
        "every fault was applied and healed on schedule (a killed replica restarted and answered)",
        healed_on_schedule,
    ),
    Criterion(
        "chaos.replica_kill.no_failed_requests",
        MILESTONE_REPLICAS,
        "one of two RA replicas killed (SIGKILL) during renewals under load: not one request of the load fails",
        request_ok,
        every_service_loaded,
    ),
    Criterion(
        "chaos.replica_kill.failed_over",
        MILESTONE_REPLICAS,
        "every agent logged ra_failover while the replica was dead and renewed through the other one",
        failed_over,
    ),
    Criterion(
        "chaos.replica_kill.store_whole",
        MILESTONE_REPLICAS,
        "the PostgreSQL store holds every certificate any replica answered with, none twice, one per spent "
        "token, and ztca audit verify passes",
        store_whole,
    ),
)
