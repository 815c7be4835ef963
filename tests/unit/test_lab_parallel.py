"""`zt-lab run --parallel N`: scenario modules on N pytest-xdist workers, one history and one report.

Real pytest-xdist workers (subprocesses) run two tiny scenario modules that start no lab but
record evidence the way scenarios do; the controller must judge it all in one report, and mark
the figures as measured while sharing the machine.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from zt.lab import checkers, cli, milestones
from zt.lab.history import Operation

SCENARIO = """
import os
import pytest

pytestmark = pytest.mark.milestone(9)


def test_{name}(history, figures):
    history.record(
        "m9.{name}", "test", "probe", "{name}", "ok", 0.0, pid=os.getpid(), worker=os.environ.get("PYTEST_XDIST_WORKER")
    )
    figures.figure(9, "{name}_ms", 1.5)
"""


def must_be_ok(op: Operation) -> str | None:
    return None if op.outcome == "ok" else "not ok"


def fake_milestone(where: Path) -> milestones.Milestone:
    for name in ("one", "two"):
        (where / f"test_m9_{name}.py").write_text(SCENARIO.replace("{name}", name))
    (where / "conftest.py").write_text('pytest_plugins = ["zt.lab.pytest_plugin"]\n')
    return milestones.Milestone(
        9,
        "two modules on two workers",
        (
            checkers.Criterion("m9.one", 9, "first module's evidence", must_be_ok),
            checkers.Criterion("m9.two", 9, "second module's evidence", must_be_ok),
        ),
        (where / "test_m9_one.py", where / "test_m9_two.py"),
    )


def test_parallel_run_judges_every_workers_evidence_in_one_report(tmp_path: Path) -> None:
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    m9 = fake_milestone(scenarios)
    reports = tmp_path / "reports"
    code = cli.main(["run", "--milestone", "9", "--parallel", "2", "--reports", str(reports)], registry={9: m9})
    doc = json.loads((reports / "latest" / "summary.json").read_text())
    assert code == 0, doc
    assert doc["verdict"] == "pass"
    assert [(c["id"], c["verdict"]) for c in doc["milestones"]["9"]["criteria"]] == [
        ("m9.one", "pass"),
        ("m9.two", "pass"),
    ]
    ops = [json.loads(line) for line in (reports / "latest" / "history.jsonl").read_text().splitlines()]
    assert len(ops) == 2
    assert all(o["details"]["worker"] and o["details"]["pid"] != os.getpid() for o in ops), "ran in xdist workers"
    figs = doc["figures"]
    assert figs["labs_at_once"] == 2 and figs["run_kind"] == "parallel (2 labs at once)"
    assert figs["values"]["9"] == {"one_ms": 1.5, "two_ms": 1.5}
    assert doc["environment"]["labs_at_once"] == 2
    assert "shared the machine" in (reports / "latest" / "report.md").read_text()


def test_a_worker_without_evidence_leaves_its_criterion_unknown(tmp_path: Path) -> None:
    """A module that records nothing: its criterion has no evidence from any worker: UNKNOWN fails."""
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    m9 = fake_milestone(scenarios)
    (scenarios / "test_m9_two.py").write_text("def test_two():\n    pass\n")
    reports = tmp_path / "reports"
    assert cli.main(["run", "--milestone", "9", "--parallel", "2", "--reports", str(reports)], registry={9: m9}) == 1
    doc = json.loads((reports / "latest" / "summary.json").read_text())
    verdicts = {c["id"]: c["verdict"] for c in doc["milestones"]["9"]["criteria"]}
    assert verdicts == {"m9.one": "pass", "m9.two": "unknown"}


@pytest.mark.parametrize("bad", ["0", "17", "two"])
def test_parallel_must_be_a_small_positive_number(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "--parallel", bad])
    assert e.value.code == 2 and "--parallel" in capsys.readouterr().err


def test_store_must_be_sqlite_or_postgres(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "--store", "mysql"])
    assert e.value.code == 2
    assert "invalid choice: 'mysql'" in capsys.readouterr().err
    assert cli.build_parser().parse_args(["run", "--store", "postgres"]).store == "postgres"
