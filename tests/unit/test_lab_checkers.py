"""Checkers and reports: verdict rules (no evidence is unknown, never a pass) and the files."""

from __future__ import annotations

import ast
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import pytest

from zt.lab import checkers, cli, milestones, report
from zt.lab.history import History, Operation


def must_be_ok(o: Operation) -> str | None:
    return None if o.outcome == "ok" else "not ok"


C = checkers.Criterion("t.c", 9, "test criterion", must_be_ok)


def test_no_operations_is_unknown_never_pass() -> None:
    assert checkers.check(C, History()).result == "unknown"


def test_all_satisfied_is_pass_with_evidence_counts() -> None:
    h = History()
    for _ in range(3):
        h.record("t.c", "test", "op", "x", "ok", time.time())
    h.record("other", "test", "op", "x", "fail", time.time())
    v = checkers.check(C, h)
    assert (v.result, v.operations, v.ok, v.failed) == ("pass", 3, 3, 0)


def test_one_violation_is_fail_and_named() -> None:
    h = History()
    h.record("t.c", "test", "op", "x", "ok", time.time())
    h.record("t.c", "svc", "call", "y", "fail", time.time())
    v = checkers.check(C, h)
    assert v.result == "fail" and v.violations == ("svc call y: not ok",)


def test_unknown_outcome_without_failures_is_unknown() -> None:
    h = History()
    h.record("t.c", "test", "op", "x", "ok", time.time())
    h.record("t.c", "test", "op", "x", "unknown", time.time())
    assert checkers.check(C, h).result == "unknown"


def test_refused_for_needs_both_sides_evidence() -> None:
    base = {"expected_client_errors": ["untrusted"], "expected_server_reason": "untrusted"}
    h = History()
    ok_op = h.record("x", "t", "hello", "s", "fail", 0, client_error="untrusted", server_reason_delta=1, **base)
    no_server = h.record("x", "t", "hello", "s", "fail", 0, client_error="untrusted", server_reason_delta=0, **base)
    accepted = h.record("x", "t", "hello", "s", "ok", 0, status=200, client_error=None, **base)
    assert checkers.refused_for(ok_op) is None
    assert "server did not count" in (checkers.refused_for(no_server) or "")
    assert "expected a refusal" in (checkers.refused_for(accepted) or "")


def test_mutual_call_compares_every_serial() -> None:
    h = History()
    good = {
        "status": 200,
        "callee_id": "B",
        "callee_agent_serial": "b1",
        "caller_id": "A",
        "caller_agent_serial": "a1",
        "body": {"peer": "B", "peer_serial": "b1", "response": {"caller": "A", "caller_serial": "a1", "serial": "b1"}},
    }
    assert checkers.mutual_call(h.record("m", "A", "call", "B", "ok", 0, **good)) is None
    stale = json.loads(json.dumps(good))
    stale["body"]["response"]["caller_serial"] = "a0"
    assert "caller serial" in (checkers.mutual_call(h.record("m", "A", "call", "B", "ok", 0, **stale)) or "")


def test_report_writes_all_forms_and_latest_link(tmp_path: Path) -> None:
    h = History()
    h.record("t.c", "test", "op", "x", "ok", time.time() - 1)
    verdicts = [checkers.check(C, h), checkers.check(checkers.Criterion("t.d", 9, "never seen", must_be_ok), h)]
    env = {
        "runtime": "process",
        "git_revision": "abc",
        "git_dirty": False,
        "command_line": ["zt-lab"],
        "seed": 1,
        "python": "3",
        "openssl": "o",
        "java": "j",
        "packages": {},
    }
    doc = report.summary("run1", verdicts, h, env, time.time() - 2, time.time(), [])
    run_dir = tmp_path / "run1"
    report.write(run_dir, doc, h)
    assert doc["verdict"] == "fail" and doc["milestones"]["9"]["verdict"] == "unknown"
    for f in ("summary.json", "report.md", "report.html", "junit.xml", "history.jsonl"):
        assert (run_dir / f).exists(), f
    suite = ET.parse(run_dir / "junit.xml").getroot()
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    assert (tmp_path / "latest").resolve() == run_dir.resolve()
    assert "<svg" in (run_dir / "report.html").read_text()
    assert History.read_jsonl(run_dir / "history.jsonl").operations()[0].criterion == "t.c"


def test_predicate_that_raises_is_unknown_with_the_exception_text_not_a_crash() -> None:
    h = History()
    h.record("m1.a_calls_b", "A", "call", "B", "ok", 0, status=200, body={})  # no callee_id: mutual_call raises
    v = checkers.check(checkers.Criterion("m1.a_calls_b", 1, "t", checkers.mutual_call), h)
    assert v.result == "unknown" and v.violations == ()
    assert len(v.errors) == 1 and "mutual_call raised KeyError: 'callee_id'" in v.errors[0]
    assert v.to_json()["errors"] == list(v.errors)


def test_a_definite_failure_still_wins_over_an_unjudgeable_operation() -> None:
    def picky(o: Operation) -> str | None:
        return "bad" if o.details["x"] == 1 else None

    h = History()
    h.record("t.c", "test", "op", "x", "ok", 0, x=1)
    h.record("t.c", "test", "op", "x", "ok", 0)  # no "x": picky raises
    v = checkers.check(checkers.Criterion("t.c", 9, "t", picky), h)
    assert v.result == "fail" and v.violations == ("test op x: bad",) and len(v.errors) == 1


FAKE = milestones.Milestone(
    9,
    "a milestone with no scenario yet",
    (
        checkers.Criterion("m9.one", 9, "first criterion", must_be_ok),
        checkers.Criterion("m9.two", 9, "second criterion", must_be_ok),
    ),
    (Path("scenarios/test_m9_does_not_exist.py"),),
)


def test_registered_milestone_without_scenario_is_unknown_and_fails_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A test-only registry: `all` runs every registered milestone, and one without a scenario
    module is judged UNKNOWN (no lab is started for it) and fails the run."""
    code = cli.main(["run", "--milestone", "all", "--reports", str(tmp_path)], registry={9: FAKE})
    out = capsys.readouterr().out
    assert code == 1
    assert "milestone 9: a milestone with no scenario yet: scenarios/test_m9_does_not_exist.py missing" in out
    assert "verdict: FAIL" in out
    doc = json.loads((tmp_path / "latest" / "summary.json").read_text())
    m9 = doc["milestones"]["9"]
    assert doc["verdict"] == "fail" and m9["verdict"] == "unknown" and m9["title"] == FAKE.title
    assert [(c["id"], c["verdict"]) for c in m9["criteria"]] == [("m9.one", "unknown"), ("m9.two", "unknown")]
    assert all("scenarios/test_m9_does_not_exist.py does not exist" in c["note"] for c in m9["criteria"])
    assert "no scenario yet" in (tmp_path / "latest" / "report.md").read_text()


def test_all_judges_a_milestone_without_scenario_next_to_one_that_passed() -> None:
    registry = {1: milestones.REGISTRY[1], 9: FAKE}
    selected = milestones.select("all", registry)
    assert [m.number for m in selected] == [1, 9]
    h = History()
    h.record("m9.one", "test", "op", "x", "ok", 0)  # evidence alone does not make up for a missing scenario
    verdicts = {v.criterion.id: v for v in milestones.judge(selected, h)}
    assert verdicts["m9.two"].result == "unknown" and verdicts["m9.two"].note
    assert verdicts["m1.a_calls_b"].note is None


def test_unknown_milestone_is_refused_naming_the_defined_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--milestone", "7"]) == 2
    defined = ", ".join([*map(str, sorted(milestones.REGISTRY)), *milestones.NAMED])
    assert f"no milestone '7': the lab defines {defined} (or all)" in capsys.readouterr().err
    with pytest.raises(ValueError, match="the lab defines 1, 9"):
        milestones.select("nine", {1: milestones.REGISTRY[1], 9: FAKE})


def test_registered_milestones_and_their_scenarios_exist() -> None:
    """Milestones are registered by the issues that bring their scenarios: 1 to 5 (3's scenarios
    are several modules, each on a lab of its own)."""
    assert sorted(milestones.REGISTRY)[:5] == [1, 2, 3, 4, 5]
    for n, m in milestones.REGISTRY.items():
        assert m.has_scenario()
        assert all(c.milestone == n for c in m.criteria)
    assert [c.id for c in milestones.REGISTRY[2].criteria] == [
        "m2.rotations_happened",
        "m2.no_failed_requests",
        "m2.open_connections_complete",
        "m2.metrics",
    ]
    ids = [c.id for c in milestones.REGISTRY[3].criteria]
    assert len(ids) == len(set(ids))
    assert {"m3.revoked_refused", "m3.latency", "m3.stale_crl", "m3.large_crl", "m3.crls_valid"} <= set(ids)
    assert [c.id for c in milestones.REGISTRY[5].criteria] == [
        "m5.unauthorised_denied",
        "m5.policy_reload",
        "m5.rate_limited",
        "m5.brute_force",
        "m5.bundle_tamper",
    ]


def test_lab_sees_the_system_from_outside_only() -> None:
    """zt/lab imports no internals of the CA, RA, agent, CRL publisher or CLI: it runs them as
    commands and talks to them over their APIs, the same way in both runtimes."""
    allowed = {"zt.spiffe", "zt.svid", "zt.fsutil", "zt.errors", "zt.clock", "zt.logjson"}
    lab = Path(checkers.__file__).parent
    found = []
    for f in sorted(lab.glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            )
            found += [
                f"{f.name}: {n}"
                for n in names
                if n.startswith("zt.") and not n.startswith("zt.lab") and n not in allowed
            ]
    assert found == []


def test_figures_reach_summary_markdown_and_html(tmp_path: Path) -> None:
    """Measured figures are reported beside the verdicts, never as verdicts."""
    from zt.lab import report
    from zt.lab.figures import Figures

    figs = Figures(tmp_path)
    figs.figure(2, "pickup_ms", {"service-a": {"p50": 12.5}})
    figs.table(2, "rotations", ["service", "old serial", "new serial"], [["service-a", "0a", "0b"]])
    png = figs.plot_file("m2-latency.png")
    png.write_bytes(b"\x89PNG")
    figs.plot(2, "latency over time", png)
    h = History()
    h.record("m9.one", "test", "op", "x", "ok", 0)
    verdicts = [checkers.check(FAKE.criteria[0], h)]
    env = {"runtime": "process", "git_revision": "x", "git_dirty": False, "command_line": [], "seed": 1}
    env |= {"python": "3", "openssl": "o", "java": "j", "packages": {}}
    doc = report.summary("run", verdicts, h, env, 0.0, 1.0, [], figures=figs)
    assert doc["verdict"] == "pass"  # figures never change a verdict
    assert doc["figures"]["values"] == {"2": {"pickup_ms": {"service-a": {"p50": 12.5}}}}
    assert doc["figures"]["plots"] == [{"milestone": 2, "title": "latency over time", "file": "plots/m2-latency.png"}]
    report.write(tmp_path, doc, h)
    page = (tmp_path / "report.html").read_text()
    assert '<img src="plots/m2-latency.png"' in page and "<td>0b</td>" in page
    assert "| service-a | 0a | 0b |" in (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "summary.json").read_text())["figures"]["tables"][0]["title"] == "rotations"


def test_whole_predicate_judges_the_set_and_cannot_pass_without_evidence() -> None:
    def at_least_three(ops: Sequence[Operation]) -> list[str]:
        return [] if len(ops) >= 3 else [f"only {len(ops)} operations, need 3"]

    c = checkers.Criterion("t.w", 9, "three", None, whole=at_least_three)
    h = History()
    assert checkers.check(c, h).result == "unknown"
    h.record("t.w", "test", "op", "x", "ok", 0)
    v = checkers.check(c, h)
    assert v.result == "fail" and v.violations == ("all operations: only 1 operations, need 3",)
    h.record("t.w", "test", "op", "x", "ok", 0)
    h.record("t.w", "test", "op", "x", "ok", 0)
    assert checkers.check(c, h).result == "pass"


def test_milestones_joined_by_commas_are_one_selection_without_repeats() -> None:
    """`all,chaos` is how CI puts the chaos run on the same labs as the milestones (--parallel)."""
    selected = milestones.select("all,chaos,1")
    assert [m.number for m in selected] == [*sorted(milestones.REGISTRY), milestones.NAMED["chaos"].number]
    with pytest.raises(ValueError, match="no milestone 'x'"):
        milestones.select("all,x")
