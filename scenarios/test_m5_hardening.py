"""Milestone 5: hardening. The mesh policy, RA rate limits across workers, token lockout, and a
pinned trust bundle, each tried against the real system on either runtime.

The lab is the one every milestone runs (both services with the lab's copy of
deploy/mesh-policy.json), with the RA as issue 13 asks for it: two worker processes, the seed's
10 issuances per identity per minute, and a lockout after 5 wrong tokens starting at 1 s. In order:

1. policy: an identity the mesh policy does not name (`m5-intruder`, a valid certificate from our
   CA) is denied /hello and /call by both services with the contract's 403; `operator` is let
   through on the same paths; `m5-reader` is allowed /hello and denied /call; service-a's own
   identity may call service-b's /hello but not service-a's;
2. policy reload: the lab's policy file is replaced with one that also allows `m5-reader` /call;
   both services flip to 200 without a restart; restored, both flip back to 403;
3. rate limit: one identity is issued ten certificates (bootstrap, then nine renewals), the
   eleventh within the minute is 429 with Retry-After; another identity is issued right after;
4. bundle tamper: the real agent, pinned to the bundle's SHA-256, is given the bundle with a
   foreign root appended: it exits non-zero naming the checksum; with the real bundle the same
   token then works;
5. brute force (last: on containers the locked source is the host, which every other test uses):
   wrong tokens from source 0 until 429 locked_out; source 0's correct token is refused while
   locked; source 1's correct token is issued; after Retry-After, source 0 is issued again.

Sources (RunningLab.ra_issue): on processes 127.0.0.2 and 127.0.0.3; on containers the host
through the RA's published port and service-a's agent container on the `pki` network.
Every action is an Operation in the history; zt.lab.checks_m5 judges, and the assertions here
fail fast with the same predicates.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable
from urllib.parse import quote

import pytest

from zt.lab import checks_m5, metrics_scrape, mtls_client, renewal
from zt.lab.core import progress
from zt.lab.figures import Figures
from zt.lab.history import History, Operation, Outcome
from zt.lab.identity import LabIdentity
from zt.lab.ra_sources import RaAnswer
from zt.lab.runtime import RunningLab
from zt.lab.topology import MESH_POLICY, Topology

pytestmark = pytest.mark.milestone(5)

LAB_TOPOLOGY = Topology(
    ra_workers=2,
    ra_rate_issue="10/1m",
    ra_rate_source="600/1m",
    ra_lockout_threshold=5,
    ra_lockout_base="1s",
    ra_lockout_max="30s",
)

STACKS = checks_m5.STACKS
DENIALS = "mtls_policy_denials_total"
MAX_BURST = 12  # wrong tokens at most; the lockout must come before
BACKOFF_DEADLINE_S = 60.0


def _assert_all(ops: list[Operation], predicate: Callable[[Operation], str | None]) -> None:
    bad = [f"{o.actor} {o.op} {o.target}: {why}" for o in ops if (why := predicate(o)) is not None]
    assert bad == [], "\n".join(bad)


def _ra_log(lab: RunningLab) -> str:
    return lab.component_log("zt-ra") or lab.component_log("ra")  # process / container name


def _starts(lab: RunningLab, service: str) -> int:
    return len(checks_m5.log_events(lab.component_log(service), "start"))


def _url(lab: RunningLab, service: str, path: str) -> str:
    if path == "/call":
        peer = "service-b" if service == "service-a" else "service-a"
        target = lab.service_url(peer, from_service=True) + "/hello"
        return f"{lab.service_url(service)}/call?target={quote(target, safe='')}"
    return lab.service_url(service) + path


def policy_request(
    lab: RunningLab,
    history: History,
    criterion: str,
    kind: str,
    who: LabIdentity,
    service: str,
    path: str,
    expect: str,
) -> Operation:
    """One GET by `who` to `service`'s `path`, with the service's own evidence of a denial:
    its denial counter's growth and a policy_denied log line naming the caller and path."""
    metrics = lab.metrics_url(service)
    before = metrics_scrape.counter(metrics, DENIALS)
    start = time.time()
    r = mtls_client.get(
        _url(lab, service, path), bundle=lab.bundle(), identity=who, expect_peer=lab.topology.spiffe_id(service)
    )
    delta = metrics_scrape.counter_delta(metrics, DENIALS, before, wait=3.0 if expect == "deny" else 0.0)
    logged = [
        e
        for e in checks_m5.log_events(lab.component_log(service), "policy_denied")
        if e.get("caller") == who.spiffe_id and e.get("path") == path
    ]
    outcome: Outcome = "unknown" if r.error == "timeout" else ("ok" if r.ok and r.status == 200 else "fail")
    return history.record(
        criterion,
        who.name,
        "get",
        service,
        outcome,
        start,
        kind=kind,
        expect=expect,
        caller_id=who.spiffe_id,
        callee_id=lab.topology.spiffe_id(service),
        method="GET",
        path=path,
        status=r.status,
        body=r.body,
        error=r.error,
        detail=r.detail[:300],
        server_denials_delta=delta,
        server_logged=bool(logged),
    )


def test_policy_denies_unknown_identities_and_admits_known_ones(
    lab: RunningLab, history: History, operator: LabIdentity, client_identity: Callable[..., LabIdentity]
) -> None:
    progress("m5: policy decisions on both services")
    intruder, reader = client_identity("m5-intruder"), client_identity("m5-reader")
    c = "m5.unauthorised_denied"
    ops = []
    for s in STACKS:
        for path in ("/hello", "/call"):
            ops.append(policy_request(lab, history, c, "unknown_denied", intruder, s, path, "deny"))
            ops.append(policy_request(lab, history, c, "known_allowed", operator, s, path, "allow"))
        ops.append(policy_request(lab, history, c, "path_allowed", reader, s, "/hello", "allow"))
        ops.append(policy_request(lab, history, c, "path_denied", reader, s, "/call", "deny"))
    service_a = lab.agent_identity("service-a")  # the callee is part of the rule
    ops.append(policy_request(lab, history, c, "callee_allowed", service_a, "service-b", "/hello", "allow"))
    ops.append(policy_request(lab, history, c, "callee_denied", service_a, "service-a", "/hello", "deny"))
    _assert_all(ops, checks_m5.policy_decision)
    assert checks_m5.policy_decision_whole(ops) == []


def _widened_policy() -> str:
    """The mesh policy with m5-reader also allowed /call."""
    doc = json.loads(MESH_POLICY.read_text())
    for rule in doc["rules"]:
        if rule["caller"].endswith("/svc/m5-reader"):
            rule["paths"] = [*rule["paths"], "/call"]
            return json.dumps(doc, indent=2) + "\n"
    raise AssertionError(f"{MESH_POLICY} has no rule for m5-reader")


def _flip(
    lab: RunningLab,
    history: History,
    reader: LabIdentity,
    phase: str,
    expect_status: int,
    before: dict[str, int | None],
    starts: dict[str, int],
) -> list[Operation]:
    """After the policy file changed: poll m5-reader's /call on both services until each
    answers `expect_status` (bounded), and record the decision, the wait and the restarts."""
    changed = time.time()
    deadline = time.monotonic() + checks_m5.RELOAD_BOUND_S
    pending = set(STACKS)
    seen: dict[str, tuple[int | None, float]] = {}
    while pending and time.monotonic() < deadline:
        for s in sorted(pending):
            r = mtls_client.get(_url(lab, s, "/call"), bundle=lab.bundle(), identity=reader, timeout=5)
            seen[s] = (r.status, time.time() - changed)
            if r.status == expect_status:
                pending.discard(s)
        if pending:
            time.sleep(0.25)
    ops = []
    for s in STACKS:
        status, waited = seen.get(s, (None, 0.0))
        ops.append(
            history.record(
                "m5.policy_reload",
                "operator",
                "replace-policy",
                s,
                "ok" if status == expect_status else "fail",
                changed,
                kind=phase,
                expect_status=expect_status,
                status_before=before.get(s),
                status=status,
                waited_s=round(waited, 2),
                starts_before=starts[s],
                starts_after=_starts(lab, s),
            )
        )
    return ops


def test_policy_reload_flips_a_decision_without_restart(
    lab: RunningLab, history: History, figures: Figures, client_identity: Callable[..., LabIdentity]
) -> None:
    progress("m5: policy reload (replace the lab's policy file, then restore it)")
    reader = client_identity("m5-reader")
    before: dict[str, int | None] = {
        s: mtls_client.get(_url(lab, s, "/call"), bundle=lab.bundle(), identity=reader).status for s in STACKS
    }
    assert before == {s: 403 for s in STACKS}, f"m5-reader's /call before the change: {before}"
    starts = {s: _starts(lab, s) for s in STACKS}
    try:
        lab.set_policy(_widened_policy())
        widened = _flip(lab, history, reader, "widened", 200, before, starts)
    finally:
        lab.set_policy(MESH_POLICY.read_text())
    restored = _flip(lab, history, reader, "restored", 403, {o.target: o.details["status"] for o in widened}, starts)
    figures.figure(
        5,
        "policy_reload_s",
        {f"{o.target} {o.details['kind']}": o.details["waited_s"] for o in widened + restored}
        | {"how": "poll every 250 ms after the file was replaced; services reload on their own"},
    )
    _assert_all(widened + restored, checks_m5.reload_flipped)
    assert checks_m5.reload_whole(widened + restored) == []


def _rate_op(history: History, lab: RunningLab, kind: str, n: int, who: str, start: float, **d: object) -> Operation:
    ok = d.get("status") == 200
    return history.record(
        "m5.rate_limited", who, "issue", who, "ok" if ok else "fail", start, kind=kind, n=n,
        ra_workers=lab.topology.ra_workers, **d,
    )  # fmt: skip


def _ra_logged_rate_limit(lab: RunningLab, name: str) -> list[dict[str, object]]:
    deadline = time.monotonic() + 3
    while True:
        lines = [
            e
            for e in checks_m5.log_events(_ra_log(lab), "rate_limited")
            if name in str(e.get("key")) and e.get("limit") == "issue_per_identity"
        ]
        if lines or time.monotonic() >= deadline:
            return lines
        time.sleep(0.2)


def test_rate_limit_the_eleventh_issuance_in_a_minute(
    lab: RunningLab, history: History, figures: Figures, client_identity: Callable[..., LabIdentity]
) -> None:
    progress(f"m5: rate limit ({lab.topology.ra_rate_issue} per identity, {lab.topology.ra_workers} RA workers)")
    t0 = time.time()
    base = client_identity("m5-rate")  # issuance 1: the bootstrap, by the real agent
    ops = [_rate_op(history, lab, "within_limit", 1, "m5-rate", t0, status=200, via="bootstrap")]
    out = lab.work_dir / "m5" / "rate"
    for n in range(2, checks_m5.RATE_LIMIT + 2):
        start = time.time()
        a = renewal.renew(lab.ra_url(), lab.bundle(), base, out / f"r{n}")
        kind = "within_limit" if n <= checks_m5.RATE_LIMIT else "over_limit"
        extra = {"ra_logged": _ra_logged_rate_limit(lab, "m5-rate")} if kind == "over_limit" else {}
        ops.append(
            _rate_op(
                history, lab, kind, n, "m5-rate", start, status=a.status, error=a.error, reason=a.reason,
                retry_after=a.retry_after, via="renewal", since_first_s=round(time.time() - t0, 2), **extra,
            )
        )  # fmt: skip
    start = time.time()
    try:
        other = client_identity("m5-other")
        a = renewal.renew(lab.ra_url(), lab.bundle(), other, out / "other")
        d: dict[str, object] = {"status": a.status, "error": a.error, "reason": a.reason}
    except Exception as e:  # noqa: BLE001 - a refused bootstrap is evidence, not a crash
        d = {"status": None, "error": type(e).__name__, "reason": str(e)[-300:]}
    ops.append(_rate_op(history, lab, "other_identity", 1, "m5-other", start, **d))
    over = [o for o in ops if o.details["kind"] == "over_limit"]
    figures.figure(
        5,
        "rate_limit",
        {
            "limit": lab.topology.ra_rate_issue,
            "ra_workers": lab.topology.ra_workers,
            "retry_after_s": [o.details.get("retry_after") for o in over],
            "eleven_in_s": round(ops[-2].end - t0, 2),
        },
    )
    _assert_all(ops, checks_m5.rate_decision)
    assert checks_m5.rate_whole(ops) == []


def test_agent_refuses_a_tampered_bundle(lab: RunningLab, history: History) -> None:
    progress("m5: an agent pinned to the bundle's SHA-256, given a tampered bundle")
    token = lab.work_dir / "m5" / "m5-tamper.token"
    token.parent.mkdir(parents=True, exist_ok=True)
    lab.register("m5-tamper", token)
    real = lab.bundle().read_bytes()
    pin = hashlib.sha256(real).hexdigest()
    impostor = lab.foreign_identity("m5-impostor")  # a root of our trust domain's name, not ours
    tampered = real + impostor.bundle.read_bytes()
    ops = []
    for kind, bundle in (("tampered", tampered), ("control", real)):
        start = time.time()
        code, output = lab.agent_once("m5-tamper", token, bundle, pin)
        ops.append(
            history.record(
                "m5.bundle_tamper",
                "zt-agent",
                "bootstrap",
                "m5-tamper",
                "ok" if code == 0 else "fail",
                start,
                kind=kind,
                exit_code=code,
                output=output[-1500:],
                bundle_sha256=hashlib.sha256(bundle).hexdigest(),
                pinned=pin,
            )
        )
    _assert_all(ops, checks_m5.tamper_decision)
    assert checks_m5.tamper_whole(ops) == []


def _bf_op(history: History, kind: str, a: RaAnswer, start: float, **d: object) -> Operation:
    return history.record(
        "m5.brute_force", a.source, "issue", "m5-locked" if kind != "other_source" else "m5-elsewhere",
        "ok" if a.status == 200 else "fail", start, kind=kind, **a.details(), **d,
    )  # fmt: skip


def _token(lab: RunningLab, name: str) -> str:
    path = lab.work_dir / "m5" / f"{name}.token"
    path.parent.mkdir(parents=True, exist_ok=True)
    lab.register(name, path)
    return path.read_text().strip()


def test_brute_force_locks_the_source_out_until_the_backoff_passes(
    lab: RunningLab, history: History, figures: Figures
) -> None:
    progress(f"m5: brute force (lockout after {lab.topology.ra_lockout_threshold} wrong tokens)")
    locked_id, elsewhere_id = lab.topology.spiffe_id("m5-locked"), lab.topology.spiffe_id("m5-elsewhere")
    good, other_good = _token(lab, "m5-locked"), _token(lab, "m5-elsewhere")
    ops: list[Operation] = []
    last: RaAnswer | None = None
    for n in range(1, MAX_BURST + 1):
        start = time.time()
        last = lab.ra_issue(secrets.token_urlsafe(32), locked_id, source=0)
        ops.append(_bf_op(history, "wrong_token", last, start, n=n))
        if last.status == 429 or last.status is None:
            break
    assert last is not None
    locked_source = last.source
    start = time.time()
    a = lab.ra_issue(good, locked_id, source=0)
    ops.append(_bf_op(history, "locked_correct_token", a, start, locked_source=locked_source))
    if a.status == 429:
        last = a
    start = time.time()
    b = lab.ra_issue(other_good, elsewhere_id, source=1)
    ops.append(_bf_op(history, "other_source", b, start, locked_source=locked_source))
    locked_at = time.time()
    deadline = time.monotonic() + BACKOFF_DEADLINE_S
    while time.monotonic() < deadline:
        wait = float(last.retry_after) if last.retry_after and last.retry_after.isdigit() else 1.0
        time.sleep(min(wait, max(0.0, deadline - time.monotonic())) + 0.2)
        start = time.time()
        last = lab.ra_issue(good, locked_id, source=0)
        if last.status != 429:
            ops.append(_bf_op(history, "after_backoff", last, start, waited_s=round(time.time() - locked_at, 2)))
            break
        ops.append(_bf_op(history, "locked_retry", last, start))
    locked_lines = [
        {k: e.get(k) for k in ("source", "failures", "retry_after", "credential")}
        for e in checks_m5.log_events(_ra_log(lab), "locked_out")
        if e.get("credential") == "bootstrap_token"
    ]
    ops.append(
        history.record(
            "m5.brute_force", "zt-ra", "log", "zt-ra", "ok" if locked_lines else "fail", time.time(),
            kind="ra_log", locked_out_lines=locked_lines,
        )
    )  # fmt: skip
    let_in = [o.details["waited_s"] for o in ops if o.details["kind"] == "after_backoff"]
    figures.figure(
        5,
        "lockout",
        {
            "wrong_tokens_until_lockout": sum(o.details["kind"] == "wrong_token" for o in ops),
            "locked_source": locked_source,
            "other_source": b.source,
            "retry_after_s": [o.details.get("retry_after") for o in ops if o.details.get("status") == 429],
            "locked_to_let_in_s": let_in[0] if let_in else None,
        },
    )
    _assert_all(ops, checks_m5.brute_force_decision)
    assert checks_m5.brute_force_whole(ops) == []
