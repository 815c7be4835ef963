"""Milestone 3's CRL checkers (zt.lab.checks_m3_crl) on hand-made histories: each predicate
passes the evidence it must and names what is wrong with the evidence it must not pass."""

from __future__ import annotations

import time
from typing import Any

import pytest

from zt.lab import checkers, checks_m3_crl, milestones
from zt.lab.checks_m3_crl import large_crl_behaviour, large_crl_coverage, stale_behaviour, stale_coverage
from zt.lab.history import History, Operation, Outcome

NOW = time.time()
PAST = NOW - 10  # the CRL's nextUpdate, passed


def op(outcome: Outcome, name: str, target: str = "service-a", start: float = NOW, **details: Any) -> Operation:
    return Operation("m3.stale_crl", target, name, target, outcome, start, start + 0.1, details)


def refused(**over: Any) -> Operation:
    d: dict[str, Any] = {
        "mode": "refuse",
        "publisher": "stopped",
        "status": None,
        "client_error": "expired",
        "crl_next_update": PAST,
        "metric_crl_stale": 1.0,
        "server_reason_delta": 1.0,
        "crl_stale_logged": [{"event": "crl_stale", "mode": "refuse"}],
        "rejections_logged": [{"event": "handshake_rejected", "reason": "crl_stale"}],
    }
    d.update(over)
    return op("fail" if d["status"] is None else "ok", "stale_handshake", **d)


def served(**over: Any) -> Operation:
    d: dict[str, Any] = {
        "mode": "warn",
        "publisher": "stopped",
        "status": 200,
        "crl_next_update": PAST,
        "metric_crl_stale": 1.0,
        "server_reason_delta": 0.0,
        "crl_stale_logged": [{"event": "crl_stale", "mode": "warn"}],
        "rejections_logged": [],
    }
    d.update(over)
    return op("ok" if d["status"] == 200 else "fail", "stale_handshake", target="service-b", **d)


def recovered(target: str, **over: Any) -> Operation:
    d: dict[str, Any] = {"status": 200, "metric_crl_stale": 0.0, "crl_next_update": NOW + 30}
    d.update(over)
    return op("ok" if d["status"] == 200 else "fail", "recovered", target=target, **d)


@pytest.mark.parametrize(
    "evidence, why",
    [
        (refused(), None),
        (refused(status=200), "refuse mode must refuse"),
        (refused(server_reason_delta=0.0), "did not count mtls_handshake_failures_total{reason=crl_stale}"),
        (refused(rejections_logged=[]), "no handshake_rejected log line with reason crl_stale"),
        (refused(metric_crl_stale=0.0), "mtls_crl_stale is 0.0, not 1"),
        (refused(crl_stale_logged=[{"event": "crl_stale", "mode": "warn"}]), "no crl_stale log line with mode"),
        (refused(crl_next_update=NOW + 5), "not stale yet"),
        (served(), None),
        (served(status=None), "warn mode must keep serving"),
        (served(metric_crl_stale=0.0), "not 1, on a stale CRL"),
        (served(crl_stale_logged=[]), "no crl_stale log line"),
        (recovered("service-a"), None),
        (recovered("service-a", status=None), "after the publisher came back"),
        (recovered("service-a", metric_crl_stale=1.0), "on a fresh CRL"),
        (recovered("service-a", crl_next_update=PAST), "is not fresh"),
    ],
)
def test_stale_crl_predicate_names_what_is_wrong(evidence: Operation, why: str | None) -> None:
    got = stale_behaviour(evidence)
    assert got is None if why is None else why in str(got)


def test_stale_crl_needs_both_modes_with_the_publisher_stopped_and_a_recovery() -> None:
    full = [refused(), served(), recovered("service-a"), recovered("service-b")]
    assert stale_coverage(full) == []
    assert any("no warn-mode service" in w for w in stale_coverage([refused(), recovered("service-a")]))
    assert any("no refuse-mode" in w for w in stale_coverage([refused(publisher="running"), *full[1:]]))
    assert stale_coverage([refused(), served(), recovered("service-b")]) == [
        "service-a was never seen serving again on a fresh CRL"
    ]


def large(name: str, target: str, outcome: Outcome = "ok", **details: Any) -> Operation:
    return Operation("m3.large_crl", "test", name, target, outcome, NOW, NOW, details)


def large_evidence(target: str) -> list[Operation]:
    caller = "spiffe://zt.lab/svc/operator"
    return [
        large("crl_loaded", target, metric_crl_entries=100001.0, expected_entries=100001),
        large("hello", target, status=200, body={"caller": caller}, caller_id=caller),
        large(
            "hello",
            target,
            "fail",
            client_error="revoked",
            expected_client_errors=["revoked"],
            expected_server_reason="revoked",
            server_reason_delta=1.0,
        ),
    ]


def test_large_crl_passes_loaded_served_and_refused_and_names_each_gap() -> None:
    ops = large_evidence("service-a") + large_evidence("service-b")
    assert [large_crl_behaviour(o) for o in ops] == [None] * 6
    assert large_crl_coverage(ops) == []
    short = large("crl_loaded", "service-a", metric_crl_entries=5.0, expected_entries=100001)
    assert "mtls_crl_entries 5.0 < 100001" in str(large_crl_behaviour(short))
    accepted = large("hello", "service-a", "ok", status=200, expected_server_reason="revoked")
    assert "expected a refusal" in str(large_crl_behaviour(accepted))
    assert large_crl_coverage(ops[:2] + large_evidence("service-b")) == [
        "service-a: no revoked_client observation with the large CRL in force"
    ]
    small = [large("crl_loaded", "service-a", metric_crl_entries=10.0, expected_entries=10), *ops[1:3]]
    assert "fewer than 100000 entries" in large_crl_coverage(small)[0]


def test_crls_valid_fails_on_any_validator_and_is_unknown_without_crls() -> None:
    criterion = {c.id: c for c in checks_m3_crl.M3_CRL}["m3.crls_valid"]
    h = History()
    assert checkers.check(criterion, h).result == "unknown"
    h.record("m3.crls_valid", "validators", "validate_crl", "crl 1", "ok", NOW, validators={"pkilint": "ok"})
    assert checkers.check(criterion, h).result == "pass"
    h.record("m3.crls_valid", "validators", "validate_crl", "crl 2", "fail", NOW, validators={"pkilint": "x (ERROR)"})
    assert checkers.check(criterion, h).result == "fail"


def test_milestone_three_registers_the_crl_criteria_and_both_crl_scenarios() -> None:
    m3 = milestones.REGISTRY[3]
    assert {"m3.stale_crl", "m3.large_crl", "m3.crls_valid"} <= {c.id for c in m3.criteria}
    assert {str(p) for p in m3.scenarios} >= {"scenarios/test_m3_stale_crl.py", "scenarios/test_m3_large_crl.py"}
