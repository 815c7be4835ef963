"""The chaos run: fault plans from chaos/*.json on a lab whose every edge is a toxiproxy proxy.

`zt-lab run --milestone chaos [--seed N]`. The lab (Topology(chaos=True)) starts the real
toxiproxy server first and routes agent->RA, agent->CRL publisher, service-a<->service-b
(/call) and load->each service through it. Agents hold 30 s certificates renewed at 20-30 % of
their life (every 6-9 s), so a fault of a quarter minute always meets due renewals. One locust
load (Milestone 2's, load/locustfile.py) runs for the whole schedule; the nemesis
(zt.lab.nemesis) applies each plan's faults in the plan's own slot and heals them on time; the
history gets every request, every fault and heal, and the agents' renewal evidence, cut per
plan (zt.lab.chaos_history); zt.lab.checks_chaos judges it. The seed (the run's --seed) moves
each fault's start; the report shows it with the schedule, and the plots shade every fault.

Knobs (environment, for the weakened-agent test and for replays):
    ZT_CHAOS_PLANS        plans to run, comma-separated file stems (default: every plan in chaos/)
    ZT_CHAOS_WEAK_AGENTS  services whose agent runs with --no-renewal-retry: plan ra-down must FAIL
    ZT_CHAOS_USERS        locust users (default 8)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import pytest

from zt.lab import chaos_history, chaos_plan, chaos_plots, chaos_store, checkers, checks_chaos
from zt.lab.chaos_plan import Schedule
from zt.lab.chaos_revocation import RevocationWatch
from zt.lab.figures import Figures
from zt.lab.history import History, Operation
from zt.lab.identity import LabIdentity
from zt.lab.load import LoadPlan, LoadRun, request_succeeded
from zt.lab.nemesis import Nemesis
from zt.lab.pytest_plugin import LabSession
from zt.lab.runtime import RunningLab
from zt.lab.topology import Topology

pytestmark = pytest.mark.milestone(checks_chaos.MILESTONE)

PLANS = [p for p in os.environ.get("ZT_CHAOS_PLANS", "").split(",") if p]
WEAK_AGENTS = tuple(s for s in os.environ.get("ZT_CHAOS_WEAK_AGENTS", "").split(",") if s)
USERS = int(os.environ.get("ZT_CHAOS_USERS", "8"))
# Plans judged by a run of their own: replica-kill (scenarios/test_replica_kill.py, milestone
# replicas) and the kills of plan 6 (scenarios/test_chaos_kills.py, milestone kills).
OTHER_RUNS = frozenset({"replica-kill", "ra-kill", "agent-kill"})
KILL_PLANS = ("ra-kill", "agent-kill")
_NAMES = {checks_chaos.MILESTONE: "chaos", checks_chaos.MILESTONE_KILLS: "kills"}
LAB_TOPOLOGY = Topology(
    chaos=True, agent_ttl_seconds=30, agent_renew_at=0.3, agent_metrics=True, weak_agents=WEAK_AGENTS
)


def _plan_ops(
    lab: RunningLab,
    schedule: Schedule,
    nemesis: Nemesis,
    records: list[dict[str, Any]],
    t0: float,
    watch: RevocationWatch | None,
) -> list[Operation]:
    read_store = any(slot.plan.name == "ra-kill" for slot in schedule.slots)
    ev = chaos_store.evidence(lab, records, t0, watch, read_store=read_store)
    ops: list[Operation] = []
    for slot in schedule.slots:
        ops += chaos_history.plan_operations(slot, [a for a, _ in nemesis.windows(slot.plan.name)], ev)
    return ops


def _revocation_watch(
    lab: RunningLab, schedule: Schedule, victim: LabIdentity | None, t0: float
) -> RevocationWatch | None:
    """Plan 3's action: revoke `victim` early in the plan's first fault, probe until the slot ends."""
    for slot in schedule.slots:
        if slot.plan.action == "revoke" and victim is not None:
            f = slot.faults[0]
            services = [s.name for s in lab.topology.services]
            # One second into the fault: `ztca revoke` takes seconds on a loaded machine, and
            # the probes need time before the heal to show the revocation held back.
            return RevocationWatch(lab, victim, services, t0 + f.at + 1.0, t0 + slot.end)
    return None


def test_every_plan_heals_and_nothing_is_lost(
    lab: RunningLab,
    history: History,
    figures: Figures,
    lab_session: LabSession,
    client_identity: Callable[..., LabIdentity],
) -> None:
    plans = [p for p in chaos_plan.load_plans(PLANS or None, store=lab.topology.store) if p.name not in OTHER_RUNS]
    run_plans(lab, history, figures, lab_session, client_identity, plans, checks_chaos.MILESTONE, checks_chaos.CHAOS)


def run_plans(
    lab: RunningLab,
    history: History,
    figures: Figures,
    lab_session: LabSession,
    client_identity: Callable[..., LabIdentity],
    plans: list[chaos_plan.Plan],
    milestone: int,
    criteria: tuple[checkers.Criterion, ...],
) -> None:
    """One load for the whole schedule of `plans`, the nemesis applying and healing their faults,
    the evidence into the history, and a fail-fast on `criteria` (the kill run reuses it)."""
    schedule = chaos_plan.schedule(plans, lab_session.seed)
    identity = client_identity("load")
    plan = LoadPlan(users=USERS, spawn_rate=float(USERS), run_seconds=schedule.load_seconds)
    run = LoadRun(lab, identity, plan, lab.work_dir / "load", log=lab.work_dir / "logs" / "locust.log")
    print(f"[lab] chaos schedule (seed {schedule.seed}): {schedule.to_json()['slots']}", flush=True)
    # The mesh policy lets `revoked-client` (Milestone 3's name for it) say /hello to both services.
    victim = client_identity("revoked-client") if any(s.plan.action == "revoke" for s in schedule.slots) else None
    run.start()
    t0 = time.time()
    nemesis = Nemesis(lab.toxiproxy(), lab.topology, schedule, t0, lab)
    watch = _revocation_watch(lab, schedule, victim, t0)
    nemesis.start()
    if watch is not None:
        watch.start()
    try:
        exit_code = run.wait()
    finally:
        nemesis.stop()
        run.stop()
        if watch is not None:
            watch.stop()
    records = run.records()
    ops = [*nemesis.operations(), *_plan_ops(lab, schedule, nemesis, records, t0, watch)]
    history.extend(ops)
    _figures(lab, figures, milestone, schedule, nemesis, records, t0, exit_code)

    # Fail fast here with the checkers' own verdicts; the run's verdicts come from the history.
    bad = checkers.not_passed(criteria, ops)
    assert not bad, "\n".join(bad)


def _figures(
    lab: RunningLab,
    figures: Figures,
    m: int,
    schedule: Schedule,
    nemesis: Nemesis,
    records: list[dict[str, Any]],
    t0: float,
    exit_code: int | None,
) -> None:
    applied = nemesis.applied
    figures.figure(
        m,
        "run",
        {
            "seed": schedule.seed,
            "replay": f"zt-lab run --milestone {_NAMES.get(m, m)} --runtime {lab.runtime_name} --seed {schedule.seed}",
            "requests": len(records),
            "failed": sum(not request_succeeded(r) for r in records),
            "faults": len(applied),
            "healed": sum(a.healed_at is not None for a in applied),
            "load_seconds": schedule.load_seconds,
            "locust_exit": exit_code,
            "runtime": lab.runtime_name,
        },
    )
    figures.figure(m, "schedule", schedule.to_json())
    figures.table(
        m,
        "faults as applied and healed (seconds since the load started)",
        ["fault", "edge", "toxic", "attributes", "applied", "healed", "failed requests in window"],
        [
            [
                a.scheduled.id,
                a.scheduled.fault.edge,
                a.scheduled.fault.toxic,
                str(a.scheduled.fault.attributes),
                round(a.applied_at - t0, 2) if a.applied_at else None,
                round(a.healed_at - t0, 2) if a.healed_at else None,
                sum(
                    1
                    for r in records
                    if a.window
                    and a.window[0] <= float(r.get("start") or 0) <= a.window[1]
                    and not request_succeeded(r)
                ),
            ]
            for a in applied
        ],
    )
    for s in lab.topology.services:
        # The milestone in the name: the chaos, kill and replica runs each plot their own (one
        # name for all of them let the last run's plot stand in for the others' in the report).
        path = figures.plot_file(f"chaos-m{m}-latency-{s.name}-{lab.runtime_name}.png")
        chaos_plots.plot_latency_with_faults(path, s.name, records, applied, t0, schedule.seed)
        figures.plot(m, f"{s.name} ({s.language}): latency, fault windows shaded (seed {schedule.seed})", path)
