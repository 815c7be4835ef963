"""Chaos plan 6, the kills: `zt-lab run --milestone kills [--seed N]` (issue 14; docs/chaos.md).

The same lab and load as the chaos run (scenarios/test_chaos.py: every edge through toxiproxy,
30 s certificates renewed every 6-9 s, Milestone 2's locust load for the whole schedule), with
the plans that kill processes: chaos/ra-kill.json SIGKILLs the RA by its PID while certificates
are due and restarts it on the same store; chaos/agent-kill.json SIGKILLs an agent the moment a
new generation exists without its last file and restarts it. zt.lab.checks_chaos.KILLS judges:
no request of the load fails, every agent renews after the restart, the store is whole (every
serial an agent holds is in it, none twice, one certificate per spent token, the audit log
verifies) and the killed agent's certificate directory is whole.

A run of its own, not part of `chaos`. It runs on both runtimes: on containers the RA's
container gets `docker kill --signal KILL` and is started again (same volumes and aliases), and
the agent's host PID gets SIGKILL the moment the lab, watching its certificate volume from the
host, sees a generation without svid.json (zt.lab.container_runtime.ContainerLab.kill_component).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from scenarios.test_chaos import KILL_PLANS, LAB_TOPOLOGY, run_plans
from zt.lab import chaos_plan, checks_chaos
from zt.lab.figures import Figures
from zt.lab.history import History
from zt.lab.identity import LabIdentity
from zt.lab.pytest_plugin import LabSession
from zt.lab.runtime import RunningLab

pytestmark = pytest.mark.milestone(checks_chaos.MILESTONE_KILLS)

__all__ = ["LAB_TOPOLOGY"]  # the lab this module runs on: the chaos run's (zt.lab.pytest_plugin reads it)


def test_killed_ra_and_agent_restart_and_nothing_is_lost_or_torn(
    lab: RunningLab,
    history: History,
    figures: Figures,
    lab_session: LabSession,
    client_identity: Callable[..., LabIdentity],
) -> None:
    plans = chaos_plan.load_plans(list(KILL_PLANS), store=lab.topology.store)
    run_plans(
        lab, history, figures, lab_session, client_identity, plans, checks_chaos.MILESTONE_KILLS, checks_chaos.KILLS
    )
