"""The RA's OpenAPI schema against the real RA, with schemathesis (issue 19).

Every check schemathesis has, in all four phases: examples, coverage (boundaries of every
constraint), fuzzing, and the stateful phase that follows the schema's OpenAPI links
(register -> issue -> renew -> revoke). Seeded and bounded in time, so it is the same run each
time and fits CI. The two widened expectations are in tests/e2e/schemathesis.toml with why;
tests/e2e/schemathesis_hooks.py stands in for an agent where a link leads to an issuance or a
renewal (a CSR's and a proof's signatures are beyond a schema). A failure fails CI; the
JUnit report goes to build/test-results/schemathesis.xml.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CaDir, start_ra

REPO = Path(__file__).resolve().parents[2]
SEED = 20261201


def schemathesis_bin() -> str:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which("schemathesis")
    if found is None:
        pytest.fail("schemathesis is not installed: pip install -e '.[dev]'")
    return found


def run_schemathesis(ca: CaDir, url: str, phases: str, seconds: int, junit: Path, work: Path) -> str:
    """One schemathesis run; `work` is its working directory (it keeps a cache there, never in
    the repository)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SCHEMATHESIS_HOOKS": "tests.e2e.schemathesis_hooks",
        "ZT_ST_ADMIN_TOKEN": ca.admin_token(),
    }
    argv = [
        schemathesis_bin(),
        "--config-file",
        str(REPO / "tests" / "e2e" / "schemathesis.toml"),
        "run",
        f"{url}/openapi.json",
        "--tls-verify",
        str(ca.paths.bundle),
        "--checks",
        "all",
        "--phases",
        phases,
        "--seed",
        str(SEED),
        "--max-examples",
        "30",
        "--max-time",
        str(seconds),
        "--generation-database",
        "none",
        # A keep-alive connection the RA closes as idle just when a request goes out is a network
        # event, not a conformance failure: retried (each retry is a new connection).
        "--request-retries",
        "2",
        "--no-color",
        "--output-truncate",
        "true",
        "--report",
        "junit",
        "--report-junit-path",
        str(junit),
    ]
    work.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=seconds + 120)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    for phase in phases.split(","):
        # The whole output when a phase did not pass: an errored case is described well before
        # the summary (a tail of 3,000 characters once showed "1 error" and not which).
        passed = f"✅  {phase.capitalize()}" in out or phase == "examples"
        assert passed, f"{phase} did not run and pass:\n{out[-20000:]}"
    # The run's own summary (operations, phases, test cases generated, checks) into CI's log:
    # the evidence of what ran, not only that nothing failed.
    print(out[out.rfind("SUMMARY") :].strip() if "SUMMARY" in out else out[-1500:])
    return out


def test_the_ra_conforms_to_its_schema_under_schemathesis(ca: CaDir, tmp_path: Path) -> None:
    """Two runs with a time budget each, so a slow machine cannot starve the stateful phase."""
    results = REPO / "build" / "test-results"
    results.mkdir(parents=True, exist_ok=True)
    # Without the per-source limit and the lockout: schemathesis sends thousands of requests,
    # many with wrong tokens, from one address (tests/e2e/test_ra_rate_limits.py tests those).
    ra = start_ra(ca, tmp_path / "logs", "--rate-source", "0", "--lockout-threshold", "0")
    try:
        run_schemathesis(ca, ra.url, "examples,coverage,fuzzing", 30, results / "schemathesis.xml", tmp_path / "st")
        out = run_schemathesis(ca, ra.url, "stateful", 50, results / "schemathesis-stateful.xml", tmp_path / "st")
    finally:
        ra.proc.stop()
    # The stateful phase followed the links and reached the success path on the real RA; how
    # far along register -> issue -> renew -> revoke it got in its time is reported, not judged.
    covered = re.search(r"API Links:\s+(\d+) covered / (\d+) selected", out)
    assert covered is not None and int(covered.group(1)) >= 2, f"links barely followed:\n{out[-3000:]}"
    events = [json.loads(line) for line in ra.proc.log_path.read_text(errors="replace").splitlines() if line[:1] == "{"]
    vias = [e.get("via") for e in events if e.get("event") == "issued"]
    assert "token" in vias, "no issuance with a token that a register answer gave"
    assert not [e for e in events if e.get("event") == "internal_error"], "the RA logged an internal error"
    print(f"schemathesis: links {covered.group(1)}/{covered.group(2)} followed; {len(vias)} issued: {set(vias)}")
