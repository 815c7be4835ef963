"""Two RA replicas on one PostgreSQL, one killed under load (issue 16; docs/scaling.md).

`zt-lab run --milestone replicas --store postgres`. The lab (Topology(store="postgres")) starts
a throwaway PostgreSQL server (zt.lab.postgres), `ztca init` on it, two zt-ra replicas on it,
and gives every agent both replicas' URLs (`--ra` twice; the first through toxiproxy). Agents
hold 30 s certificates renewed every 6-9 s. Under Milestone 2's locust load, the nemesis
(chaos/replica-kill.json) SIGKILLs replica 1 by its PID and restarts it 12 s later: agents
must fail over to replica 2 (`ra_failover` in their logs) and renew through it, no request of
the load may fail, and the store must hold every certificate any replica answered with, none
twice (zt.lab.chaos_store). zt.lab.checks_chaos.REPLICAS judges it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from zt.lab import chaos_history, chaos_plan, chaos_store, checkers, checks_chaos
from zt.lab.figures import Figures
from zt.lab.history import History
from zt.lab.identity import LabIdentity
from zt.lab.load import LoadPlan, LoadRun, request_succeeded
from zt.lab.nemesis import Nemesis
from zt.lab.pytest_plugin import LabSession
from zt.lab.runtime import RunningLab
from zt.lab.topology import Topology

pytestmark = pytest.mark.milestone(checks_chaos.MILESTONE_REPLICAS)

LAB_TOPOLOGY = Topology(chaos=True, store="postgres", agent_ttl_seconds=30, agent_renew_at=0.3, agent_metrics=True)


def test_replica_killed_agents_fail_over_and_nothing_is_lost(
    lab_session: LabSession,
    lab: RunningLab,
    client_identity: Callable[..., LabIdentity],
    history: History,
    figures: Figures,
) -> None:
    schedule = chaos_plan.schedule(chaos_plan.load_plans(["replica-kill"], store="postgres"), lab_session.seed)
    run = LoadRun(
        lab,
        client_identity("load"),
        LoadPlan(users=8, spawn_rate=8.0, run_seconds=schedule.load_seconds),
        lab.work_dir / "load",
        log=lab.work_dir / "logs" / "locust.log",
    )
    print(f"[lab] replica-kill schedule (seed {schedule.seed}): {schedule.to_json()['slots']}", flush=True)
    run.start()
    t0 = time.time()
    nemesis = Nemesis(lab.toxiproxy(), lab.topology, schedule, t0, lab)
    nemesis.start()
    try:
        exit_code = run.wait()
    finally:
        nemesis.stop()
        run.stop()
    records = run.records()
    ev = chaos_store.evidence(lab, records, t0, None, read_store=True)
    ops = list(nemesis.operations())
    for slot in schedule.slots:
        ops += chaos_history.plan_operations(slot, [a for a, _ in nemesis.windows(slot.plan.name)], ev)
    history.extend(ops)
    figures.figure(
        checks_chaos.MILESTONE_REPLICAS,
        "run",
        {
            "seed": schedule.seed,
            "requests": len(records),
            "failed": sum(not request_succeeded(r) for r in records),
            "faults": len(nemesis.applied),
            "healed": sum(a.healed_at is not None for a in nemesis.applied),
            "load_seconds": schedule.load_seconds,
            "locust_exit": exit_code,
            "store": lab.topology.store,
            "replicas": lab.topology.ra_replicas,
        },
    )
    bad = checkers.not_passed(checks_chaos.REPLICAS, ops)
    assert not bad, "\n".join(bad)
