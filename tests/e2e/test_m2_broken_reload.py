"""Milestone 2 must FAIL when a service cannot reload: the negative twin of the milestone.

A rotation test that passes with no rotation is a known defect of other projects. Here the
real Milestone 2 run (`zt-lab run --milestone 2`, the real RA, agents, services and locust)
starts service-a with `--no-reload` (Topology.no_reload, via ZT_M2_NO_RELOAD) and a short
load. Its agent keeps writing new generations; service-a keeps presenting its first serial
until that certificate expires. The run must fail, and say why: the serials service-a never
presented, and (once its certificate expired) the failed requests, by request.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.e2e.failing_lab import criteria_of, require_native_builds, run_failing_lab

LOAD_SECONDS = os.environ.get("ZT_M2_BROKEN_LOAD_SECONDS", "45")


@pytest.mark.timeout(900)
def test_milestone_two_fails_naming_what_a_service_without_reload_missed(tmp_path: Path) -> None:
    require_native_builds()
    env = {"ZT_M2_NO_RELOAD": "service-a", "ZT_M2_LOAD_SECONDS": LOAD_SECONDS}
    doc = run_failing_lab(tmp_path, ["--milestone", "2"], env, timeout=840)
    criteria = criteria_of(doc, "2")
    assert doc["verdict"] == "fail" and doc["milestones"]["2"]["verdict"] == "fail"

    rotations = criteria["m2.rotations_happened"]
    assert rotations["verdict"] == "fail"
    named = " | ".join(rotations["violations"])
    assert "service-a: serial" in named and "was never presented to a new connection" in named, named
    # Its first serial at most (none once its certificate expired before the load reached it).
    assert re.search(r"service-a: [01] distinct serials presented to clients, need 6", named), named
    assert "service-b: serial" not in named, "service-b reloads: its rotations must not be blamed"

    requests = criteria["m2.no_failed_requests"]
    assert requests["verdict"] == "fail"
    failed = " | ".join(requests["violations"])
    assert "request " in failed and "failed:" in failed, failed  # named, one by one
    assert criteria["m2.open_connections_complete"]["verdict"] != "pass"
