"""Plan 1 of the chaos run must FAIL when an agent does not retry a failed renewal.

The negative twin of the chaos run's plan 1 (docs/chaos.md): the real chaos lab
(`zt-lab run --milestone chaos`, real toxiproxy, RA, agents, services and locust), only the
plan `ra-down`, with service-a's agent started with `--no-renewal-retry`
(ZT_CHAOS_WEAK_AGENTS). Its first renewal attempt meets the RA down; it does not try again
before its 30 s certificate expires, so service-a serves an expired certificate and the load's
requests to it fail. The run must fail and say why: the failed requests named one by one, and
service-a's agent as the one that did not renew after the heal (service-b's agent retried and
is not blamed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.failing_lab import REPO, criteria_of, require_native_builds, run_failing_lab


@pytest.mark.timeout(600)
def test_chaos_plan_one_fails_naming_the_requests_a_weak_agent_dropped(tmp_path: Path) -> None:
    require_native_builds()
    if not (REPO / ".tools" / "bin" / "toxiproxy-server").exists():
        pytest.fail(".tools/bin/toxiproxy-server is needed (scripts/install-deps.sh)", pytrace=False)
    env = {"ZT_CHAOS_PLANS": "ra-down", "ZT_CHAOS_WEAK_AGENTS": "service-a"}
    doc = run_failing_lab(tmp_path, ["--milestone", "chaos", "--seed", "7"], env, timeout=540)
    criteria = criteria_of(doc, "6")
    assert doc["verdict"] == "fail"

    # The fault itself was applied and healed on schedule: the failure is the agent's.
    assert criteria["chaos.faults_healed"]["verdict"] == "pass", criteria["chaos.faults_healed"]

    requests = criteria["chaos.ra_down.no_failed_requests"]
    assert requests["verdict"] == "fail", requests
    named = " | ".join(requests["violations"])
    assert "request " in named and "service-a" in named and "failed:" in named, named

    renewed = criteria["chaos.ra_down.renewed_after_heal"]
    assert renewed["verdict"] == "fail", renewed
    blamed = " | ".join(renewed["violations"])
    assert "service-a:" in blamed, blamed
    assert "service-b:" not in blamed, "service-b's agent retried: it must not be blamed"
