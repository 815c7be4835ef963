"""Checkers and reports: verdict rules (no evidence is unknown, never a pass) and the files."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from zt.lab import checkers, report
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
    good = {"status": 200, "callee_id": "B", "callee_agent_serial": "b1", "caller_id": "A", "caller_agent_serial": "a1",
            "body": {"peer": "B", "peer_serial": "b1", "response": {"caller": "A", "caller_serial": "a1",
                                                                      "serial": "b1"}}}
    assert checkers.mutual_call(h.record("m", "A", "call", "B", "ok", 0, **good)) is None
    stale = json.loads(json.dumps(good))
    stale["body"]["response"]["caller_serial"] = "a0"
    assert "caller serial" in (checkers.mutual_call(h.record("m", "A", "call", "B", "ok", 0, **stale)) or "")


def test_report_writes_all_forms_and_latest_link(tmp_path: Path) -> None:
    h = History()
    h.record("t.c", "test", "op", "x", "ok", time.time() - 1)
    verdicts = [checkers.check(C, h), checkers.check(checkers.Criterion("t.d", 9, "never seen", must_be_ok), h)]
    env = {"runtime": "process", "git_revision": "abc", "git_dirty": False, "command_line": ["zt-lab"], "seed": 1,
           "python": "3", "openssl": "o", "java": "j", "packages": {}}
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
