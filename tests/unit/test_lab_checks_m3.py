"""Milestone 3's checkers on hand-made histories: each predicate passes the evidence it must and
names what is wrong with the evidence it must not pass (a check that cannot fail is a defect)."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from zt.lab import checks_m3, milestones
from zt.lab.history import Operation, Outcome
from zt.lab.revocation_probe import latency_summary, log_events, nearest_rank, norm_serial

SERIAL = "0a1b2c"


def op(criterion: str, outcome: Outcome, target: str = "service-b", name: str = "hello", **details: Any) -> Operation:
    return Operation(criterion, "test", name, target, outcome, time.time(), time.time(), details)


def direct(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "kind": "direct",
        "presented_serial": SERIAL,
        "revoked_serials": [SERIAL],
        "status": None,
        "client_error": "revoked",
        "detail": "tlsv13 alert certificate revoked",
        "server_revoked_delta": 1.0,
        "server_rejections": [{"reason": "revoked", "peer_serial": SERIAL.upper()}],
    }
    d.update(over)
    return d


@pytest.mark.parametrize(
    "change, why",
    [
        ({}, None),
        ({"revoked_serials": ["ff"]}, "not among those `ztca revoke` reported"),
        ({"client_error": "certificate_unknown"}, "expected the alert certificate_revoked"),
        ({"server_revoked_delta": 0.0}, "did not count a handshake failure with reason revoked"),
        ({"server_rejections": [{"reason": "revoked", "peer_serial": "ff"}]}, "logged no handshake_rejected"),
        ({"server_rejections": [{"reason": "untrusted", "peer_serial": SERIAL}]}, "logged no handshake_rejected"),
    ],
)
def test_direct_refusal_needs_the_alert_the_count_and_the_serial_in_the_log(
    change: dict[str, Any], why: str | None
) -> None:
    got = checks_m3.refused_as_revoked(op("m3.revoked_refused", "fail", **direct(**change)))
    assert got is None if why is None else why in str(got)


def test_revoked_certificate_that_was_served_is_a_violation() -> None:
    got = checks_m3.refused_as_revoked(op("m3.revoked_refused", "ok", **direct(status=200, client_error=None)))
    assert got is not None and "expected a refused handshake" in got


def call(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "kind": "call",
        "refusing_side": "server",
        "presented_serial": SERIAL,
        "revoked_serials": [SERIAL],
        "serving_serial": SERIAL,
        "status": 502,
        "body": {"error": "upstream_tls", "reason": "sslv3 alert certificate revoked (SSL alert number 44)"},
        "server_revoked_delta": 1.0,
        "server_rejections": [{"reason": "revoked", "peer_serial": SERIAL}],
    }
    d.update(over)
    return d


@pytest.mark.parametrize(
    "change, why",
    [
        ({}, None),
        ({"refusing_side": "caller", "server_revoked_delta": 0, "server_rejections": []}, None),
        ({"status": 200, "body": {"status": 200}}, "expected 502 upstream_tls naming the revocation"),
        ({"body": {"error": "upstream_tls", "reason": "alert certificate unknown"}}, "naming the revocation"),
        ({"serving_serial": "ff"}, "not the revoked"),
        ({"server_revoked_delta": 0}, "did not count"),
    ],
)
def test_call_refusal_names_the_revocation(change: dict[str, Any], why: str | None) -> None:
    got = checks_m3.refused_as_revoked(op("m3.revoked_refused", "fail", name="call", **call(**change)))
    assert got is None if why is None else why in str(got)


def test_revoked_refused_needs_both_kinds_and_both_stacks() -> None:
    ops = [op("m3.revoked_refused", "fail", target="service-b", **direct())]
    whys = checks_m3.revoked_refused_whole(ops)
    assert "no evidence of kind call" in whys and "no direct refusal observed on service-a" in whys


def test_renewal_refused_for_the_right_reason_only() -> None:
    base: dict[str, Any] = {
        "presented_serial": SERIAL,
        "revoked_serials": [SERIAL],
        "status": 401,
        "error": "revoked_certificate",
    }
    assert checks_m3.renewal_refused(op("m3.revoked_cannot_renew", "fail", **base)) is None
    renewed = {**base, "status": 200, "error": None, "new_serial": "beef"}
    assert "expected 401/403" in str(checks_m3.renewal_refused(op("m3.revoked_cannot_renew", "ok", **renewed)))
    other = {**base, "error": "bad_proof"}
    assert "expected revoked_certificate" in str(
        checks_m3.renewal_refused(op("m3.revoked_cannot_renew", "fail", **other))
    )


def test_revoke_by_service_must_cover_every_live_certificate_and_probe_each() -> None:
    live = ["a1", "b2", "c3"]
    revoke_op = op("m3.revoke_by_service", "ok", target="fleet", name="revoke", live_before=live, revoked_serials=live)
    assert checks_m3.by_service(revoke_op) is None
    partial = op("m3.revoke_by_service", "ok", name="revoke", live_before=live, revoked_serials=live[:2])
    assert "not revoked" in str(checks_m3.by_service(partial))
    single = op("m3.revoke_by_service", "ok", name="revoke", live_before=live[:1], revoked_serials=live[:1])
    assert "needs several" in str(checks_m3.by_service(single))
    probes = [
        op(
            "m3.revoke_by_service",
            "fail",
            target=s,
            **direct(
                presented_serial=x, revoked_serials=live, server_rejections=[{"reason": "revoked", "peer_serial": x}]
            ),
        )
        for x in live
        for s in checks_m3.STACKS
    ]
    assert [checks_m3.by_service(p) for p in probes] == [None] * 6
    assert checks_m3.by_service_whole([revoke_op, *probes]) == []
    assert "never presented to service-a" in " ".join(checks_m3.by_service_whole([revoke_op, *probes[1:]]))


def trial(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "presented_serial": SERIAL,
        "revoked_serials": [SERIAL],
        "accepted_before": True,
        "refused_after_return_s": 0.8,
        "probe": {"refused_after_s": 2.8, "bound_s": 60.0, "accepted_after_revoke": 12, "first_refusal": {}},
        "server_revoked_delta": 1.0,
    }
    d.update(over)
    return d


@pytest.mark.parametrize(
    "change, why",
    [
        ({}, None),
        ({"refused_after_return_s": 29.9}, None),  # slow is a figure, not a failure
        ({"refused_after_return_s": 30.5}, "over the 30.0 s bound"),
        (
            {"refused_after_return_s": None, "probe": {"refused_after_s": None, "accepted_after_revoke": 600}},
            "no refusal 30.0 s after",
        ),
        ({"accepted_before": False}, "proves nothing"),
        ({"server_revoked_delta": 0}, "counted no failure with reason revoked"),
    ],
)
def test_latency_trial_fails_only_past_the_bound_or_without_proof(change: dict[str, Any], why: str | None) -> None:
    got = checks_m3.refused_within_bound(op("m3.latency", "fail", **trial(**change)))
    assert got is None if why is None else why in str(got)


def test_latency_needs_twenty_trials_split_between_the_stacks() -> None:
    ops = [op("m3.latency", "fail", target=checks_m3.STACKS[n % 2], **trial()) for n in range(20)]
    assert checks_m3.latency_whole(ops) == []
    assert checks_m3.latency_whole(ops[:19]) != []
    lopsided = [op("m3.latency", "fail", target="service-a", **trial()) for _ in range(20)]
    assert "only 0 trials against service-b" in checks_m3.latency_whole(lopsided)


def cut(**over: Any) -> dict[str, Any]:
    d = trial(
        served_caller_serial=SERIAL,
        cut_after_return_s=0.9,
        cut={"cut_after_s": 2.9, "bound_s": 60.0, "served_after_event": 10, "cut": {"error": "closed"}},
        server_closed_delta=1.0,
    )
    d.update(over)
    return d


@pytest.mark.parametrize(
    "change, why",
    [
        ({}, None),
        ({"served_caller_serial": "ff"}, "not the revoked"),
        (
            {"cut_after_return_s": None, "cut": {"cut_after_s": None, "bound_s": 60.0, "served_after_event": 600}},
            "still served 30.0 s",
        ),
        ({"server_closed_delta": 0}, "counted no connection closed with reason revoked"),
    ],
)
def test_open_connection_cut_on_revocation(change: dict[str, Any], why: str | None) -> None:
    got = checks_m3.connection_cut_revoked(op("m3.open_connection_cut", "fail", **cut(**change)))
    assert got is None if why is None else why in str(got)


def expired(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "served_before_expiry": True,
        "cut": {"cut_after_s": 0.4, "bound_s": 30.0, "cut": {"status": None, "error": "closed"}},
        "cut_body_error": None,
        "server_closed_delta": 1.0,
    }
    d.update(over)
    return d


@pytest.mark.parametrize(
    "change, why",
    [
        ({}, None),
        (
            {
                "server_closed_delta": 0,
                "cut_body_error": "peer_certificate_expired",
                "cut": {"cut_after_s": 0.1, "bound_s": 30.0, "cut": {"status": 401}},
            },
            None,
        ),
        ({"served_before_expiry": False}, "proves nothing"),
        ({"cut": {"cut_after_s": -5.0, "bound_s": 30.0, "cut": {}}}, "before the certificate expired"),
        ({"cut": {"cut_after_s": None, "bound_s": 30.0, "cut": None}}, "still served"),
        ({"server_closed_delta": 0}, "counted no close with reason expired"),
    ],
)
def test_expired_connection_cut(change: dict[str, Any], why: str | None) -> None:
    got = checks_m3.connection_cut_expired(op("m3.expired_connection_cut", "fail", **expired(**change)))
    assert got is None if why is None else why in str(got)


def test_recovery_needs_a_new_unrevoked_certificate_served_and_calls() -> None:
    boot = op("m3.recovery", "ok", name="bootstrap", new_serial="beef", old_serial=SERIAL, revoked_serials=[SERIAL])
    assert checks_m3.recovered(boot) is None
    stale = op("m3.recovery", "fail", name="bootstrap", new_serial=None, old_serial=SERIAL, revoked_serials=[SERIAL])
    assert "wrote no new certificate" in str(checks_m3.recovered(stale))
    reused = op("m3.recovery", "ok", name="bootstrap", new_serial=SERIAL, revoked_serials=[SERIAL])
    assert "is a revoked one" in str(checks_m3.recovered(reused))
    serve = op("m3.recovery", "ok", name="serve", serving_serial=SERIAL, agent_serial="beef")
    assert "not the agent's new" in str(checks_m3.recovered(serve))
    assert "no serve evidence" in checks_m3.recovered_whole([boot])


def test_milestone_three_judges_all_its_criteria() -> None:
    ids = {c.id for c in milestones.REGISTRY[3].criteria}
    assert ids == {c.id for c in checks_m3.M3} | {"m3.stale_crl", "m3.large_crl", "m3.crls_valid"}


def test_serials_compare_whatever_their_case_or_leading_zeros() -> None:
    assert norm_serial("0A1b") == norm_serial("a1B") == norm_serial("0x0a1b")
    assert norm_serial("0") == "0"


def test_log_events_reads_json_lines_since_a_time() -> None:
    text = "\n".join(
        [
            "not json",
            '{"ts":"2026-01-01T00:00:00.000Z","event":"handshake_rejected","peer_serial":"1"}',
            '{"ts":"2026-01-01T00:00:02.000Z","event":"handshake_rejected","peer_serial":"2"}',
            '{"ts":"2026-01-01T00:00:03.000Z","event":"request"}',
        ]
    )
    got = log_events(text, "handshake_rejected", "2026-01-01T00:00:01.000Z")
    assert [e["peer_serial"] for e in got] == ["2"]


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 11)]
    assert (nearest_rank(values, 50), nearest_rank(values, 99)) == (5.0, 10.0)
    assert nearest_rank([0.3], 99) == 0.3
    assert latency_summary([]) == {"n": 0, "p50_s": None, "p99_s": None, "max_s": None}
    assert latency_summary([0.2, 0.1]) == {"n": 2, "p50_s": 0.1, "p99_s": 0.2, "max_s": 0.2}


def test_predicates_do_not_mutate_the_evidence() -> None:
    d = direct()
    before = copy.deepcopy(d)
    checks_m3.refused_as_revoked(op("m3.revoked_refused", "fail", **d))
    assert d == before
