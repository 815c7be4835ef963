"""A real `zt-lab run` that a test expects to FAIL (the negative twins of Milestone 2 and of the
chaos run's plan 1): run it, check it failed and wrote its summary, and hand back the summary.

A lab run that passes while something is broken on purpose is the defect these twins exist to
catch, so a zero exit fails the test with the run's own output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def require_native_builds() -> None:
    """Like every test of the real services, a missing build fails (make test builds them first)."""
    if not (REPO / "build" / "service-a").exists() or not (REPO / "build" / "service-b").exists():
        pytest.fail("build/service-a and build/service-b are needed (make native)", pytrace=False)


def run_failing_lab(reports: Path, args: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """`zt-lab run ARGS --reports REPORTS` with `env` added; its summary.json once it failed."""
    r = subprocess.run(
        [sys.executable, "-m", "zt.lab.cli", "run", *args, "--reports", str(reports)],
        cwd=REPO,
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert r.returncode != 0, r.stdout[-3000:]
    summary = reports / "latest" / "summary.json"
    assert summary.exists(), r.stdout[-3000:] + r.stderr[-2000:]
    doc: dict[str, Any] = json.loads(summary.read_text())
    return doc


def criteria_of(doc: dict[str, Any], milestone: str) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in doc["milestones"][milestone]["criteria"]}
