"""The chaos criteria can fail: each predicate against evidence that must pass and evidence
that must not (a check that cannot fail is a defect), and UNKNOWN without evidence."""

from __future__ import annotations

from typing import Any

from zt.lab import checkers, checks_chaos
from zt.lab.history import History, Operation


def _crit(cid: str) -> checkers.Criterion:
    return next(c for c in checks_chaos.CHAOS + checks_chaos.KILLS + checks_chaos.REPLICAS if c.id == cid)


def _verdict(cid: str, *details: dict[str, Any], outcome: str = "ok") -> checkers.Verdict:
    h = History()
    h.extend(Operation(cid, "t", "op", str(d.get("target", "x")), outcome, 0.0, 1.0, d) for d in details)  # type: ignore[arg-type]
    return checkers.check(_crit(cid), h)


def _request(ok: bool, **kw: Any) -> dict[str, Any]:
    r = {"id": "r1", "kind": "fresh", "target": "service-a", "path": "/hello", "start": 1.0, "end": 1.1, "at_s": 3.0}
    r.update(status=200, error=None) if ok else r.update(status=None, error="server_untrusted", detail="expired")
    r.update(kw)
    return r


def test_chaos_no_failed_requests_names_the_failed_request() -> None:
    ok = _verdict("chaos.ra_down.no_failed_requests", _request(True), _request(True, target="service-b"))
    assert ok.result == "pass"
    bad = _verdict("chaos.ra_down.no_failed_requests", _request(True), _request(False, id="vm-9", target="service-b"))
    assert bad.result == "fail"
    assert "request vm-9" in bad.violations[0] and "server_untrusted" in bad.violations[0]
    one_service = _verdict("chaos.ra_down.no_failed_requests", _request(True))
    assert one_service.result == "fail"  # the load missed a service: "no request failed" says nothing


def _renewal(**kw: Any) -> dict[str, Any]:
    d = {"service": "service-a", "failures_in_window": 3, "min_failures": 2, "first_write_after_heal_s": 0.5}
    return {**d, "bound_s": 10.0, **kw}


def test_chaos_renewed_after_heal_needs_the_retry_and_a_renewal_within_the_bound() -> None:
    assert _verdict("chaos.ra_down.renewed_after_heal", _renewal()).result == "pass"
    assert _verdict("chaos.ra_down.renewed_after_heal", _renewal(failures_in_window=1)).result == "fail"
    late = _verdict("chaos.ra_down.renewed_after_heal", _renewal(first_write_after_heal_s=12.0))
    assert late.result == "fail" and "bound 10.0s" in late.violations[0]
    never = _verdict("chaos.ra_down.renewed_after_heal", _renewal(first_write_after_heal_s=None, failures_in_window=1))
    assert "no new certificate after the heal" in never.violations[0] and "1 failed renewal" in never.violations[0]


def test_chaos_unhealed_fault_is_unknown_and_a_late_heal_fails() -> None:
    fault = {"fault": "p#0", "proxy": "agent-ra", "scheduled_heal": 10.0, "healed_at": 10.1}
    clean = {"after_heal": {"enabled": True, "toxics": []}}
    assert _verdict("chaos.faults_healed", {**fault, **clean}).result == "pass"
    assert _verdict("chaos.faults_healed", {**fault, **clean}, outcome="unknown").result == "unknown"
    assert _verdict("chaos.faults_healed", {**fault, **clean, "healed_at": 15.0}).result == "fail"
    left = _verdict("chaos.faults_healed", {**fault, "after_heal": {"enabled": True, "toxics": ["x"]}})
    assert left.result == "fail"
    assert _verdict("chaos.faults_healed", {**fault, **clean, "apply_error": "HTTP 409"}).result == "fail"


def test_chaos_latency_rises_by_about_the_injected_amount() -> None:
    d = {"latency_ms": 200, "jitter_ms": 50, "median_before_ms": 70.0}
    assert _verdict("chaos.mesh_latency.latency_rises", {**d, "median_during_ms": 480.0}).result == "pass"
    assert _verdict("chaos.mesh_latency.latency_rises", {**d, "median_during_ms": 150.0}).result == "fail"
    assert _verdict("chaos.mesh_latency.latency_rises", {**d, "median_during_ms": 5000.0}).result == "fail"


def test_chaos_clear_errors_wants_a_named_upstream_error_and_a_fault_that_bit() -> None:
    named = _request(False, kind="call", status=502, error=None, body={"error": "upstream_tls", "reason": "TLS"})
    named["fault"] = "p#0"
    assert _verdict("chaos.mesh_faults.clear_errors", named).result == "pass"
    vague = {**named, "body": {"error": "upstream_tls", "reason": ""}}
    assert _verdict("chaos.mesh_faults.clear_errors", vague).result == "fail"
    hung = {**named, "end": named["start"] + 30}
    assert _verdict("chaos.mesh_faults.clear_errors", hung).result == "fail"
    ok_only = {**_request(True, kind="call", hops={"upstream_status": 200}), "fault": "p#0"}
    toothless = _verdict("chaos.mesh_faults.clear_errors", ok_only)
    assert toothless.result == "fail" and "nothing proven" in toothless.violations[0]


def test_chaos_revocation_after_heal_must_have_been_held_back_then_refused() -> None:
    d = {"service": "service-a", "bound_s": 10.0, "accepted_before_heal": 5, "first_refused_after_heal_s": 2.0}
    d |= {"revoked_before_heal_s": 9.0}
    d |= {"accepted_after_refusal": 0, "last_probe_after_heal_s": 12.0}
    assert _verdict("chaos.crl_down.revoked_after_heal", d).result == "pass"
    assert _verdict("chaos.crl_down.revoked_after_heal", {**d, "accepted_before_heal": 0}).result == "fail"
    assert _verdict("chaos.crl_down.revoked_after_heal", {**d, "first_refused_after_heal_s": None}).result == "fail"
    assert _verdict("chaos.crl_down.revoked_after_heal", {**d, "accepted_after_refusal": 1}).result == "fail"
    late = _verdict("chaos.crl_down.revoked_after_heal", {**d, "revoked_before_heal_s": -2.0})
    assert late.result == "fail" and "did not cover it" in late.violations[0]


def test_chaos_cert_dirs_whole_and_no_evidence_unknown() -> None:
    assert _verdict("chaos.ra_slow.cert_dirs_whole", {"problems": []}).result == "pass"
    assert _verdict("chaos.ra_slow.cert_dirs_whole", {"problems": ["gen-1: key.pem does not match"]}).result == "fail"
    assert checkers.check(_crit("chaos.ra_slow.cert_dirs_whole"), History()).result == "unknown"


def _kill(**kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "fault": "ra-kill#0",
        "toxic": "kill",
        "proxy": "",
        "scheduled_heal": 10.0,
        "heal_started_at": 10.05,
        "healed_at": 12.5,  # a restart takes seconds: lateness is judged from when it began
        "process": {"component": "ra", "killed_pid": 100, "exit_code": -9},
        "after_heal": {"pid": 200, "alive": True},
    }
    return {**d, **kw}


def test_chaos_kill_fault_wants_sigkill_a_timely_restart_and_a_new_live_process() -> None:
    assert _verdict("chaos.faults_healed", _kill()).result == "pass"
    termed = _verdict("chaos.faults_healed", _kill(process={"component": "ra", "killed_pid": 100, "exit_code": 0}))
    assert termed.result == "fail" and "not by SIGKILL" in termed.violations[0]
    assert _verdict("chaos.faults_healed", _kill(heal_started_at=15.0)).result == "fail"
    assert _verdict("chaos.faults_healed", _kill(after_heal={"pid": 200, "alive": False})).result == "fail"
    assert _verdict("chaos.faults_healed", _kill(after_heal={"pid": 100, "alive": True})).result == "fail"
    assert _verdict("chaos.faults_healed", _kill(heal_error="zt-ra never answered")).result == "fail"
    assert _verdict("chaos.faults_healed", _kill(), outcome="unknown").result == "unknown"


def _store(**kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "integrity": "ok",
        "certificates": 30,
        "held": 12,
        "held_not_in_store": [],
        "token_certificates": 2,
        "tokens_spent": 2,
        "token_mismatch": [],
        "duplicate_serials": [],
        "audit_verify_exit": 0,
        "audit_verify_output": "ok",
    }
    return {**d, **kw}


def test_chaos_store_whole_names_what_was_lost_or_torn() -> None:
    assert _verdict("chaos.ra_kill.store_whole", _store()).result == "pass"
    lost = _verdict("chaos.ra_kill.store_whole", _store(held_not_in_store=["1a2b"]))
    assert lost.result == "fail" and "1a2b" in lost.violations[0]
    torn = _verdict("chaos.ra_kill.store_whole", _store(token_mismatch=["token of service-a spent on 9, no such"]))
    assert torn.result == "fail"
    assert _verdict("chaos.ra_kill.store_whole", _store(duplicate_serials=["5"])).result == "fail"
    assert _verdict("chaos.ra_kill.store_whole", _store(integrity="*** page 3 corrupt")).result == "fail"
    chain = _verdict("chaos.ra_kill.store_whole", _store(audit_verify_exit=1, audit_verify_output="line 7: bad hash"))
    assert chain.result == "fail" and "line 7" in chain.violations[0]
    assert _verdict("chaos.ra_kill.store_whole", _store(held=0)).result == "fail"  # nothing looked for
    assert _verdict("chaos.ra_kill.store_whole", {"error": "no store read"}, outcome="unknown").result == "unknown"
    assert (
        _verdict("chaos.ra_kill.no_failed_requests", _request(True), _request(False, target="service-b")).result
        == "fail"
    )
    assert _verdict("chaos.ra_kill.renewed_after_heal", _renewal(min_failures=1, failures_in_window=0)).result == "fail"


def _mid_write(**kw: Any) -> dict[str, Any]:
    files = ["cert.pem", "chain.pem", "key.pem", "svid.json"]
    d = {"service": "service-a", "writing": "gen-1", "files_at_kill": ["key.pem"], "generation_files": files}
    return {**d, **kw}


def test_chaos_agent_kill_must_land_mid_write_and_leave_a_whole_directory() -> None:
    assert _verdict("chaos.agent_kill.mid_write", _mid_write()).result == "pass"
    missed = _verdict("chaos.agent_kill.mid_write", _mid_write(writing=None, files_at_kill=None))
    assert missed.result == "fail" and "nothing proven" in missed.violations[0]
    done = _mid_write(files_at_kill=["cert.pem", "chain.pem", "key.pem", "svid.json"])
    assert _verdict("chaos.agent_kill.mid_write", done).result == "fail"
    torn = {"service": "service-a", "problems": ["gen-1: missing svid.json"]}
    assert _verdict("chaos.agent_kill.cert_dir_whole", torn).result == "fail"
    assert _verdict("chaos.agent_kill.cert_dir_whole", {**torn, "problems": []}).result == "pass"
    late = _renewal(min_failures=0, failures_in_window=0, first_write_after_heal_s=None)
    assert _verdict("chaos.agent_kill.renewed_after_restart", late).result == "fail"
    assert _verdict("chaos.agent_kill.no_failed_requests", _request(True), _request(False)).result == "fail"


def test_chaos_replica_kill_needs_a_failover_and_a_renewal_through_the_other_replica() -> None:
    crit = next(c for c in checks_chaos.REPLICAS if c.id == "chaos.replica_kill.failed_over")
    good = {"service": "service-a", "failovers": 2, "written_during": 1}

    def verdict(d: dict[str, Any]) -> str:
        h = History()
        h.extend([Operation(crit.id, "t", "op", "x", "ok", 0.0, 1.0, d)])
        return checkers.check(crit, h).result

    assert verdict(good) == "pass"
    assert verdict({**good, "failovers": 0}) == "fail"  # the agent never moved: nothing proven
    assert verdict({**good, "written_during": 0}) == "fail"  # moved, but renewed nowhere
    whole = next(c for c in checks_chaos.REPLICAS if c.id == "chaos.replica_kill.store_whole")
    h = History()
    h.extend([Operation(whole.id, "t", "op", "x", "ok", 0.0, 1.0, _store(integrity=None, held_not_in_store=["ab"]))])
    assert checkers.check(whole, h).result == "fail"
