"""Milestone 5's checkers on hand-made histories: each criterion passes on the evidence the
scenario records when the system behaves, fails on each way it can misbehave, and is unknown
without evidence."""

from __future__ import annotations

from typing import Any

import pytest

from zt.lab import checkers, checks_m5
from zt.lab.history import History, Operation, Outcome

A, B = "spiffe://zt.lab/svc/service-a", "spiffe://zt.lab/svc/service-b"
INTRUDER, OPERATOR, READER = (f"spiffe://zt.lab/svc/{n}" for n in ("m5-intruder", "operator", "m5-reader"))
CALLEE = {"service-a": A, "service-b": B}


def op(criterion: str, target: str, outcome: Outcome, **details: Any) -> Operation:
    return Operation(criterion, "test", "x", target, outcome, 0.0, 1.0, details)


def criterion(cid: str) -> checkers.Criterion:
    return next(c for c in checks_m5.M5 if c.id == cid)


def verdict(cid: str, ops: list[Operation]) -> str:
    h = History()
    h.extend(ops)
    return checkers.check(criterion(cid), h).result


def denied(kind: str, caller: str, service: str, path: str, **over: Any) -> Operation:
    callee = CALLEE[service]
    body = {
        "error": "forbidden",
        "reason": f"{caller} may not call GET {path} on {callee}",
        "caller": caller,
        "callee": callee,
        "method": "GET",
        "path": path,
    }
    d: dict[str, Any] = dict(
        kind=kind, expect="deny", caller_id=caller, callee_id=callee, method="GET", path=path, status=403,
        body=body, server_denials_delta=1.0, server_logged=True,
    )  # fmt: skip
    d.update(over)
    return op("m5.unauthorised_denied", service, "fail", **d)


def allowed(kind: str, caller: str, service: str, path: str) -> Operation:
    body = {"caller": caller} if path == "/hello" else {"status": 200}
    return op(
        "m5.unauthorised_denied", service, "ok", kind=kind, expect="allow", caller_id=caller,
        callee_id=CALLEE[service], method="GET", path=path, status=200, body=body,
    )  # fmt: skip


def good_policy() -> list[Operation]:
    ops = []
    for s in ("service-a", "service-b"):
        for p in ("/hello", "/call"):
            ops += [denied("unknown_denied", INTRUDER, s, p), allowed("known_allowed", OPERATOR, s, p)]
        ops += [allowed("path_allowed", READER, s, "/hello"), denied("path_denied", READER, s, "/call")]
    ops += [allowed("callee_allowed", A, "service-b", "/hello"), denied("callee_denied", A, "service-a", "/hello")]
    return ops


def test_policy_passes_on_the_evidence_of_a_working_policy() -> None:
    assert verdict("m5.unauthorised_denied", good_policy()) == "pass"


@pytest.mark.parametrize(
    "over",
    [
        {"status": 200},  # let through
        {"status": 401, "body": {"error": "unauthorized"}},
        {"server_denials_delta": 0.0},  # not counted
        {"server_logged": False},  # not logged
        {"body": {"error": "forbidden", "reason": "no", "caller": INTRUDER, "callee": A, "method": "GET"}},  # v1 body
    ],
)
def test_policy_fails_on_a_wrong_denial(over: dict[str, Any]) -> None:
    ops = good_policy()
    ops[0] = denied("unknown_denied", INTRUDER, "service-a", "/hello", **over)
    assert verdict("m5.unauthorised_denied", ops) == "fail"


def test_policy_fails_without_service_b_or_the_callee_rule() -> None:
    only_a = [o for o in good_policy() if o.target == "service-a" and not o.details["kind"].startswith("callee")]
    assert verdict("m5.unauthorised_denied", only_a) == "fail"


def test_policy_unknown_without_evidence() -> None:
    assert verdict("m5.unauthorised_denied", []) == "unknown"


def flip(service: str, phase: str, **over: Any) -> Operation:
    expect = 200 if phase == "widened" else 403
    d: dict[str, Any] = dict(
        kind=phase, expect_status=expect, status_before=403 if expect == 200 else 200, status=expect, waited_s=2.0,
        starts_before=1, starts_after=1,
    )  # fmt: skip
    d.update(over)
    return op("m5.policy_reload", service, "ok" if d["status"] == expect else "fail", **d)


def good_reload() -> list[Operation]:
    return [flip(s, p) for s in ("service-a", "service-b") for p in ("widened", "restored")]


def test_reload_passes_and_fails() -> None:
    assert verdict("m5.policy_reload", good_reload()) == "pass"
    for over in ({"status": 403}, {"starts_after": 2}, {"waited_s": 31.0}, {"status_before": 200}):
        ops = good_reload()
        ops[0] = flip("service-a", "widened", **over)
        assert verdict("m5.policy_reload", ops) == "fail", over
    assert verdict("m5.policy_reload", good_reload()[:2]) == "fail"  # service-b never observed


def rate(kind: str, n: int, status: int | None, **over: Any) -> Operation:
    d: dict[str, Any] = dict(kind=kind, n=n, status=status, ra_workers=2)
    if kind == "over_limit":
        d.update(error="rate_limited", retry_after="42", ra_logged=[{"event": "rate_limited"}])
    d.update(over)
    return op("m5.rate_limited", "m5-rate", "ok" if status == 200 else "fail", **d)


def good_rate() -> list[Operation]:
    return [
        *[rate("within_limit", n, 200) for n in range(1, 11)],
        rate("over_limit", 11, 429),
        rate("other_identity", 1, 200),
    ]


def test_rate_limit_passes_and_fails() -> None:
    assert verdict("m5.rate_limited", good_rate()) == "pass"
    bad_over: list[dict[str, Any]] = [
        {"status": 200},
        {"retry_after": None},
        {"retry_after": "0.5"},
        {"ra_logged": []},
        {"error": "x"},
    ]
    for over in bad_over:
        ops = good_rate()
        ops[10] = rate("over_limit", 11, over.pop("status", 429), **over)
        assert verdict("m5.rate_limited", ops) == "fail", over
    early = good_rate()
    early[5] = rate("within_limit", 6, 429)  # refused within the limit
    assert verdict("m5.rate_limited", early) == "fail"
    one_worker = [rate(o.details["kind"], o.details["n"], o.details["status"], ra_workers=1) for o in good_rate()]
    assert verdict("m5.rate_limited", one_worker) == "fail"
    assert verdict("m5.rate_limited", good_rate()[:-1]) == "fail"  # others unaffected: not shown


def bf(kind: str, status: int | None, **over: Any) -> Operation:
    d: dict[str, Any] = dict(kind=kind, status=status, source="127.0.0.2", retry_after=None, error=None)
    if status == 429:
        d.update(error="locked_out", retry_after="1")
    elif status == 401:
        d.update(error="invalid_token")
    d.update(over)
    return op("m5.brute_force", "m5-locked", "ok" if status == 200 else "fail", **d)


def good_bf() -> list[Operation]:
    return [
        *[bf("wrong_token", 401) for _ in range(5)],
        bf("wrong_token", 429),
        bf("locked_correct_token", 429),
        bf("other_source", 200, source="127.0.0.3", locked_source="127.0.0.2"),
        bf("after_backoff", 200),
        bf("ra_log", None, locked_out_lines=[{"source": "127.0.0.2"}]),
    ]


def test_brute_force_passes_and_fails() -> None:
    assert verdict("m5.brute_force", good_bf()) == "pass"
    never_locked = [o for o in good_bf() if o.details["status"] != 429]
    assert verdict("m5.brute_force", never_locked) == "fail"
    for i, replacement in (
        (6, bf("locked_correct_token", 200)),  # a correct token from the locked source got in
        (7, bf("other_source", 429, source="127.0.0.3", locked_source="127.0.0.2")),
        (7, bf("other_source", 200, source="127.0.0.2", locked_source="127.0.0.2")),
        (8, bf("after_backoff", 429)),
        (9, bf("ra_log", None, locked_out_lines=[])),
    ):
        ops = good_bf()
        ops[i] = replacement
        assert verdict("m5.brute_force", ops) == "fail", replacement.details


def test_bundle_tamper_passes_and_fails() -> None:
    def t(kind: str, code: int, output: str) -> Operation:
        return op(
            "m5.bundle_tamper", "m5-tamper", "ok" if code == 0 else "fail", kind=kind, exit_code=code, output=output
        )

    refused = t("tampered", 2, "trust bundle b.pem has SHA-256 ab, pinned cd: refusing to trust it")
    control = t("control", 0, "")
    assert verdict("m5.bundle_tamper", [refused, control]) == "pass"
    assert verdict("m5.bundle_tamper", [t("tampered", 0, ""), control]) == "fail"
    assert verdict("m5.bundle_tamper", [t("tampered", 1, "connection refused"), control]) == "fail"
    assert verdict("m5.bundle_tamper", [refused, t("control", 1, "token already used")]) == "fail"
    assert verdict("m5.bundle_tamper", [refused]) == "fail"
    assert verdict("m5.bundle_tamper", []) == "unknown"


def test_log_events_reads_json_lines_among_others() -> None:
    text = 'noise\n{"event":"start","pid":1}\n[x] {"event": "policy_denied", "caller": "c"}\n{bad json\n'
    assert [e["event"] for e in checks_m5.log_events(text, "start")] == ["start"]
    assert checks_m5.log_events(text, "policy_denied")[0]["caller"] == "c"
