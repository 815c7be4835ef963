"""Milestone 3, a stale CRL: the publisher stops, the CRL the services hold passes nextUpdate.

The lab runs with a short CRL validity (40 s: the RA re-issues at half of it, every 20 s) and
one service in each `--crl-stale` mode: service-a (C++) `refuse`, service-b (Java) `warn`.
With the publisher stopped, the agents keep the last CRL they fetched, and once its nextUpdate
passes, service-a refuses every handshake with reason `crl_stale` (log, `mtls_crl_stale`,
`mtls_handshake_failures_total{reason="crl_stale"}`) while service-b keeps serving and raises
the same alarm. The heal: the publisher starts again, serves the CRL the RA re-issued
meanwhile, the agents fetch it, and both services serve on a fresh CRL. Every CRL served in
the run goes through pkilint and `openssl crl -verify` (m3.crls_valid).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import pytest

from zt.lab import crl_probes
from zt.lab.checks_m3_crl import stale_behaviour, stale_coverage
from zt.lab.crl_watch import CrlWatcher
from zt.lab.figures import Figures
from zt.lab.history import History
from zt.lab.identity import LabIdentity
from zt.lab.runtime import RunningLab
from zt.lab.topology import DEFAULT_SERVICES, Topology

# Bring-up plus up to two CRL validities of waiting can pass the suite's default 300 s per test.
pytestmark = [pytest.mark.milestone(3), pytest.mark.timeout(600)]

CRL_VALIDITY_SECONDS = 40  # short, so a stale CRL comes within a minute; ztca init sets no floor
MODES = {"service-a": "refuse", "service-b": "warn"}
LAB_TOPOLOGY = Topology(
    crl_validity=f"{CRL_VALIDITY_SECONDS}s",
    services=tuple(dataclasses.replace(s, crl_stale=MODES[s.name]) for s in DEFAULT_SERVICES),
)
PROBES_WHILE_STALE = 3


@pytest.fixture(scope="module")
def crl_watcher(lab: RunningLab) -> Iterator[CrlWatcher]:
    watcher = CrlWatcher(lab.crl_url).start()
    yield watcher
    watcher.stop()


def test_stale_crl_refuse_mode_refuses_warn_mode_serves_both_recover(
    lab: RunningLab, history: History, figures: Figures, operator: LabIdentity, crl_watcher: CrlWatcher
) -> None:
    services = list(MODES)
    for s in services:  # the starting point: both serve on a fresh CRL
        crl_probes.wait_fresh(lab, s)
    stopped_at = time.time()
    lab.stop_component("crl")
    healed = False
    try:
        stale_from = crl_probes.wait_past_next_update(lab, services, timeout=2 * CRL_VALIDITY_SECONDS + 60)
        for _ in range(PROBES_WHILE_STALE):
            for s in services:
                crl_probes.probe_stale(lab, history, "m3.stale_crl", s, operator, publisher="stopped")
        restarted_at = time.time()
        lab.start_component("crl")
        healed = True
        for s in services:
            crl_probes.wait_fresh(lab, s)
        fresh_at = time.time()
        for s in services:
            crl_probes.probe_recovered(lab, history, "m3.stale_crl", s, operator)
    finally:
        if not healed:
            lab.start_component("crl")
    figures.figure(
        3,
        "stale_crl_s",
        {
            "crl_validity": CRL_VALIDITY_SECONDS,
            "publisher_stopped_to_stale": round(stale_from - stopped_at, 1),
            "publisher_down": round(restarted_at - stopped_at, 1),
            "publisher_back_to_fresh_crl": round(fresh_at - restarted_at, 1),
        },
    )
    ops = history.operations("m3.stale_crl")
    assert [f"{o.target} {o.op}: {why}" for o in ops if (why := stale_behaviour(o))] == []
    assert stale_coverage(ops) == []


def test_every_crl_served_passes_validators(
    lab: RunningLab, history: History, figures: Figures, crl_watcher: CrlWatcher
) -> None:
    crl_watcher.stop()
    crl_watcher.save(figures.report_dir / "crls" / "m3-stale")
    ops = crl_probes.validate_collected(history, "m3.crls_valid", crl_watcher, lab.work_dir / "ca" / "intermediate.pem")
    figures.figure(3, "crls_served_stale_lab", len(ops))
    assert len(ops) >= 2  # at least the one before the stop and a fresh one after
    assert [o.details for o in ops if o.outcome != "ok"] == []
