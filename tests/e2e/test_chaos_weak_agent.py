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

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(600)
def test_chaos_plan_one_fails_naming_the_requests_a_weak_agent_dropped(tmp_path: Path) -> None:
    if not (REPO / "build" / "service-a").exists() or not (REPO / "build" / "service-b").exists():
        pytest.fail("build/service-a and build/service-b are needed (make native)", pytrace=False)
    if not (REPO / ".tools" / "bin" / "toxiproxy-server").exists():
        pytest.fail(".tools/bin/toxiproxy-server is needed (scripts/install-deps.sh)", pytrace=False)
    env = {
        **os.environ,
        "ZT_CHAOS_PLANS": "ra-down",
        "ZT_CHAOS_WEAK_AGENTS": "service-a",
        "PYTHONPATH": str(REPO),
    }
    r = subprocess.run(
        [sys.executable, "-m", "zt.lab.cli", "run", "--milestone", "chaos", "--seed", "7", "--reports", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert r.returncode != 0, r.stdout[-3000:]
    summary = tmp_path / "latest" / "summary.json"
    assert summary.exists(), r.stdout[-3000:] + r.stderr[-2000:]
    doc = json.loads(summary.read_text())
    criteria = {c["id"]: c for c in doc["milestones"]["6"]["criteria"]}
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
