"""Milestone 5's checkers: hardening, judged from the run's history.

The verdict rules are zt.lab.checkers' (pass: evidence and no violation; unknown: no evidence;
fail: a violation). Each operation carries raw observations (status, the JSON body, headers,
counter deltas, log lines, exit codes) and a `kind` saying what the scenario was trying; the
predicates below decide whether the answer is what issue 13 and the contract demand:

- m5.unauthorised_denied: a caller with a valid certificate of our CA that the mesh policy does
  not name gets 403 `forbidden` with the contract's reason and fields (caller, callee, method,
  path) from both services, and the services count the denial; an allowed caller gets 200 on the
  same paths; a caller allowed /hello is denied /call; service-a's own identity may call
  service-b's /hello but not service-a's (the callee is part of the rule);
- m5.policy_reload: a replaced policy file flips a decision on both services without a
  restart (one `start` line in each service's log), and flips back when it is restored;
- m5.rate_limited: ten issuances for one identity within a minute succeed and the eleventh is
  429 `rate_limited` with an integer Retry-After, another identity is issued meanwhile, the RA
  runs two workers, and the RA logged the refusal;
- m5.brute_force: a burst of wrong bootstrap tokens from one source ends in 429 `locked_out`
  with Retry-After; while locked, even a correct token from that source is refused; a correct
  token from another source is issued; after the backoff the locked source is issued again;
- m5.bundle_tamper: the agent, pinned to the real bundle's SHA-256 and given a tampered one,
  exits non-zero naming the checksum, and the same token then works with the real bundle (so
  the refusal came before any use of the tampered trust).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from zt.lab.checkers import Criterion
from zt.lab.history import Operation

STACKS = ("service-a", "service-b")
RELOAD_BOUND_S = 30.0  # a policy change not in force after this long is a failure
RATE_LIMIT = 10  # the seed's example and the RA's default: issuances per identity per minute


def log_events(text: str, event: str) -> list[dict[str, Any]]:
    """The JSON log lines of `event` in a component's log (other lines are skipped)."""
    out = []
    for line in text.splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            doc = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("event") == event:
            out.append(doc)
    return out


def _kinds(ops: Iterable[Operation]) -> set[str]:
    return {str(o.details.get("kind")) for o in ops}


def _missing(ops: Sequence[Operation], wanted: Iterable[tuple[str, str]]) -> list[str]:
    """(kind, target) pairs with no operation."""
    seen = {(str(o.details.get("kind")), o.target) for o in ops}
    return [f"no {kind} evidence on {target}" for kind, target in wanted if (kind, target) not in seen]


# -- m5.unauthorised_denied -----------------------------------------------------------------------


def _denied(o: Operation) -> str | None:
    d = o.details
    body = d.get("body") or {}
    if o.outcome != "fail" or d.get("status") != 403 or body.get("error") != "forbidden":
        return f"expected 403 forbidden, got {d.get('status')} {d.get('error') or ''} {body}"
    expected = {"caller": d["caller_id"], "callee": d["callee_id"], "method": d["method"], "path": d["path"]}
    wrong = {k: body.get(k) for k, v in expected.items() if body.get(k) != v}
    if wrong:
        return f"the 403 names {wrong}, expected {expected}"
    reason = str(body.get("reason", ""))
    want = f"{d['caller_id']} may not call {d['method']} {d['path']} on {d['callee_id']}"
    if reason != want:
        return f"reason {reason!r}, expected {want!r}"
    if float(d.get("server_denials_delta", 0)) < 1:
        return "the service did not count the denial (mtls_policy_denials_total)"
    if not d.get("server_logged"):
        return "the service logged no policy_denied line naming the caller and path"
    return None


def _allowed(o: Operation) -> str | None:
    d = o.details
    body = d.get("body") or {}
    if o.outcome != "ok" or d.get("status") != 200:
        return f"expected 200, got {d.get('status')} {d.get('error') or ''} {body}"
    if d["path"] == "/hello" and body.get("caller") != d["caller_id"]:
        return f"the service saw caller {body.get('caller')!r}, expected {d['caller_id']!r}"
    if d["path"] == "/call" and body.get("status") != 200:
        return f"/call went through but the upstream answered {body.get('status')}"
    return None


def policy_decision(o: Operation) -> str | None:
    """The request got the decision the mesh policy makes for it (`expect`: allow or deny)."""
    expect = o.details["expect"]
    if expect == "deny":
        return _denied(o)
    if expect == "allow":
        return _allowed(o)
    return f"unknown expectation {expect!r}"


def policy_decision_whole(ops: Sequence[Operation]) -> list[str]:
    """An unknown identity denied and an allowed one admitted on both services and both paths;
    one caller allowed /hello and denied /call; a callee-specific rule both ways."""
    wanted = [(k, s) for k in ("unknown_denied", "known_allowed", "path_allowed", "path_denied") for s in STACKS]
    wanted += [("callee_allowed", "service-b"), ("callee_denied", "service-a")]
    out = _missing(ops, wanted)
    for kind in ("unknown_denied", "known_allowed"):
        paths = {o.details.get("path") for o in ops if o.details.get("kind") == kind}
        out += [f"no {kind} evidence on {p}" for p in ("/hello", "/call") if p not in paths]
    return out


# -- m5.policy_reload ------------------------------------------------------------------------------


def reload_flipped(o: Operation) -> str | None:
    """After the policy file was replaced, the decision changed without a restart."""
    d = o.details
    if o.outcome != "ok":
        return f"no flip to {d['expect_status']} within {d.get('waited_s')} s (last status {d.get('status')})"
    if d.get("status") != d["expect_status"]:
        return f"status {d.get('status')}, expected {d['expect_status']}"
    if d.get("status_before") == d["expect_status"]:
        return f"the decision was {d.get('status_before')} already before the change: nothing flipped"
    if d.get("starts_after") != d.get("starts_before") or d.get("starts_after") != 1:
        return f"the service started {d.get('starts_before')} -> {d.get('starts_after')} times: a restart, not a reload"
    if float(d.get("waited_s", 0)) > RELOAD_BOUND_S:
        return f"the change took {d['waited_s']} s (bound {RELOAD_BOUND_S} s)"
    return None


def reload_whole(ops: Sequence[Operation]) -> list[str]:
    return _missing(ops, [(phase, s) for phase in ("widened", "restored") for s in STACKS])


# -- m5.rate_limited -------------------------------------------------------------------------------


def _retry_after_ok(value: object) -> str | None:
    if not isinstance(value, str) or not value.isdigit() or int(value) < 1:
        return f"Retry-After {value!r} is not a positive integer of seconds"
    return None


def rate_decision(o: Operation) -> str | None:
    """Within the limit: issued. The eleventh for the same identity: 429 rate_limited with
    Retry-After, logged by the RA. Another identity meanwhile: issued."""
    d = o.details
    if d["kind"] in ("within_limit", "other_identity"):
        if d.get("status") != 200:
            return f"expected the issuance, got {d.get('status')} {d.get('error')} {d.get('reason')}"
        return None
    if d["kind"] == "over_limit":
        if d.get("status") != 429 or d.get("error") != "rate_limited":
            return f"expected 429 rate_limited, got {d.get('status')} {d.get('error')} {d.get('reason')}"
        if why := _retry_after_ok(d.get("retry_after")):
            return why
        if not d.get("ra_logged"):
            return "the RA logged no rate_limited line (limit issue_per_identity) for this identity"
        return None
    return f"unknown kind {d['kind']!r}"


def rate_whole(ops: Sequence[Operation]) -> list[str]:
    out = [f"no {k} evidence" for k in ("within_limit", "over_limit", "other_identity") if k not in _kinds(ops)]
    n_ok = sum(o.details.get("kind") == "within_limit" for o in ops)
    if n_ok < RATE_LIMIT:
        out.append(f"only {n_ok} issuances within the limit observed, expected {RATE_LIMIT}")
    first_over = min((int(o.details.get("n", 0)) for o in ops if o.details.get("kind") == "over_limit"), default=None)
    if first_over is not None and first_over != RATE_LIMIT + 1:
        out.append(f"the first refusal was issuance {first_over}, expected {RATE_LIMIT + 1}")
    workers = {o.details.get("ra_workers") for o in ops}
    if any(not isinstance(w, int) or w < 2 for w in workers):
        out.append(f"the RA ran with {sorted(map(str, workers))} workers; the limit must hold across two")
    return out


# -- m5.brute_force --------------------------------------------------------------------------------


def _locked(d: dict[str, Any]) -> str | None:
    if d.get("status") != 429 or d.get("error") != "locked_out":
        return f"expected 429 locked_out, got {d.get('status')} {d.get('error')} {d.get('reason')}"
    return _retry_after_ok(d.get("retry_after"))


def brute_force_decision(o: Operation) -> str | None:
    d = o.details
    kind = d["kind"]
    if kind == "wrong_token":
        if d.get("status") in (401, 403) and d.get("error") not in ("locked_out", "rate_limited"):
            return None
        return _locked(d)  # the burst's end
    if kind in ("locked_correct_token", "locked_retry"):
        return _locked(d)
    if kind in ("other_source", "after_backoff"):
        if d.get("status") != 200:
            return f"expected the issuance, got {d.get('status')} {d.get('error')} {d.get('reason')}"
        if kind == "other_source" and d.get("source") == d.get("locked_source"):
            return f"the other source {d.get('source')} is the locked one"
        return None
    if kind == "ra_log":
        if not d.get("locked_out_lines"):
            return "the RA logged no locked_out line for the bootstrap token"
        return None
    return f"unknown kind {kind!r}"


def brute_force_whole(ops: Sequence[Operation]) -> list[str]:
    out = [
        f"no {k} evidence"
        for k in ("wrong_token", "locked_correct_token", "other_source", "after_backoff", "ra_log")
        if k not in _kinds(ops)
    ]
    burst = [o.details for o in ops if o.details.get("kind") == "wrong_token"]
    if burst and burst[-1].get("status") != 429:
        out.append(f"the burst of {len(burst)} wrong tokens did not end in a lockout (last {burst[-1].get('status')})")
    if burst and not any(b.get("status") in (401, 403) for b in burst):
        out.append("no wrong token was refused as wrong before the lockout")
    return out


# -- m5.bundle_tamper ------------------------------------------------------------------------------


def tamper_decision(o: Operation) -> str | None:
    d = o.details
    if d["kind"] == "tampered":
        if d.get("exit_code") == 0:
            return "the agent accepted a tampered bundle (exit 0)"
        text = str(d.get("output", "")).lower()
        if "sha-256" not in text and "sha256" not in text and "checksum" not in text:
            return f"the agent exited {d.get('exit_code')} without naming the checksum: {d.get('output', '')[-300:]!r}"
        return None
    if d["kind"] == "control":
        if d.get("exit_code") != 0:
            return f"the real bundle with the same token failed ({d.get('exit_code')}): {d.get('output', '')[-300:]!r}"
        return None
    return f"unknown kind {d['kind']!r}"


def tamper_whole(ops: Sequence[Operation]) -> list[str]:
    return [f"no {k} evidence" for k in ("tampered", "control") if k not in _kinds(ops)]


M5 = (
    Criterion(
        "m5.unauthorised_denied",
        5,
        "an identity the mesh policy does not allow gets 403 with the reason from both services; allowed ones 200",
        policy_decision,
        policy_decision_whole,
    ),
    Criterion(
        "m5.policy_reload",
        5,
        "a changed policy file flips a decision on both services without a restart",
        reload_flipped,
        reload_whole,
    ),
    Criterion(
        "m5.rate_limited",
        5,
        "the 11th issuance for one identity in a minute is 429 with Retry-After, others unaffected, 2 RA workers",
        rate_decision,
        rate_whole,
    ),
    Criterion(
        "m5.brute_force",
        5,
        "a burst of wrong tokens locks the source out; another source is unaffected; the lockout expires",
        brute_force_decision,
        brute_force_whole,
    ),
    Criterion(
        "m5.bundle_tamper",
        5,
        "an agent pinned to the bundle's checksum refuses a tampered bundle and says why",
        tamper_decision,
        tamper_whole,
    ),
)
