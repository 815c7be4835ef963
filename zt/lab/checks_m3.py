"""Milestone 3's checkers: revocation end to end, judged from the run's history.

The verdict rules are zt.lab.checkers' (pass: evidence and no violation; unknown: no evidence;
fail: a violation). Operations carry raw observations (what the client saw, the server's
counter deltas and log lines, the serials involved) and these predicates decide whether that
is what Milestone 3 (issue 11) and issue 18 demand:

- a revoked certificate is refused on new handshakes, for the reason "revoked", on both sides:
  the client receives the alert certificate_revoked, the server counts
  `mtls_handshake_failures_total{reason="revoked"}` and logs the serial it refused, which is the
  serial `ztca revoke` revoked;
- valid identities keep working meanwhile;
- the RA refuses to renew from a revoked certificate;
- `ztca revoke --service` revokes every live certificate of the service;
- re-registration brings the service back with a new certificate;
- how long revocation takes to bite is a figure; only a certificate still accepted after a
  generous bound (30 s) fails;
- open connections of a revoked or expired peer are ended (issue 18).

The CRL's own criteria (a stale CRL, a large CRL, every CRL valid) live in zt.lab.checks_m3_crl.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from zt.lab import checkers
from zt.lab.checkers import Criterion
from zt.lab.history import Operation
from zt.lab.revocation_probe import BOUND, norm_serial

REVOKED_ALERT = "revoked"  # zt.lab.mtls_client's name for the TLS alert certificate_revoked (RFC 8446 6.2)
STACKS = ("service-a", "service-b")
MIN_LATENCY_TRIALS = 20


def _server_named_serial(d: dict[str, object], serial: str) -> str | None:
    """The server's log has a handshake_rejected line with reason revoked for `serial`."""
    events = d.get("server_rejections")
    if not isinstance(events, list):
        return "no server log evidence recorded"
    for e in events:
        if (
            isinstance(e, dict)
            and e.get("reason") == "revoked"
            and norm_serial(e.get("peer_serial")) == norm_serial(serial)
        ):
            return None
    seen = [(e.get("reason"), e.get("peer_serial")) for e in events if isinstance(e, dict)][:5]
    return f"the server logged no handshake_rejected with reason revoked for serial {serial} (saw {seen})"


def _revoked_by_ztca(d: dict[str, object], serial: str) -> str | None:
    revoked = d.get("revoked_serials")
    if not isinstance(revoked, list) or norm_serial(serial) not in {norm_serial(s) for s in revoked}:
        return f"serial {serial} is not among those `ztca revoke` reported revoked ({revoked})"
    return None


def refused_as_revoked(o: Operation) -> str | None:
    """A handshake presenting a revoked certificate was refused because it is revoked.

    Two kinds of evidence. `direct`: the test presented the revoked certificate and key itself.
    `call`: service-a, serving the revoked certificate, was asked to /call service-b (or service-b
    to /call service-a, which must refuse the revoked server certificate), and the refusal comes
    back in the /call answer (502 upstream_tls naming the revocation).
    """
    d = o.details
    presented = str(d["presented_serial"])
    why = _revoked_by_ztca(d, presented)
    if why:
        return why
    if d["kind"] == "direct":
        if o.outcome != "fail" or d.get("status") is not None:
            return f"expected a refused handshake, got status {d.get('status')} {d.get('error')}"
        if d.get("client_error") != REVOKED_ALERT:
            seen = f"{d.get('client_error')!r} ({d.get('detail', '')[:120]})"
            return f"client saw {seen}, expected the alert certificate_revoked"
    elif d["kind"] == "call":
        body = d.get("body") or {}
        reason = str(body.get("reason", "")).lower()
        if d.get("status") != 502 or body.get("error") != "upstream_tls" or "revoked" not in reason:
            return f"/call answered {d.get('status')} {body}, expected 502 upstream_tls naming the revocation"
        if norm_serial(d.get("serving_serial")) != norm_serial(presented):
            return f"the revoked side served serial {d.get('serving_serial')}, not the revoked {presented}"
        if d.get("refusing_side") == "caller":  # the caller refused the revoked upstream's certificate
            return None
        # the revoked service called out: the callee refused it; its counters and log below
    else:
        return f"unknown kind {d['kind']!r}"
    if float(d.get("server_revoked_delta", 0)) < 1:
        return "the server did not count a handshake failure with reason revoked"
    return _server_named_serial(d, presented)


def _covers(ops: Sequence[Operation], kinds: set[str]) -> list[str]:
    seen = {str(o.details.get("kind")) for o in ops}
    return [f"no evidence of kind {k}" for k in sorted(kinds - seen)]


def revoked_refused_whole(ops: Sequence[Operation]) -> list[str]:
    """Both kinds of evidence, and the direct probe on both stacks."""
    out = _covers(ops, {"direct", "call"})
    stacks = {o.target for o in ops if o.details.get("kind") == "direct"}
    out += [f"no direct refusal observed on {s}" for s in STACKS if s not in stacks]
    return out


def still_works(o: Operation) -> str | None:
    """A valid identity's request (or a /call between two services holding valid certificates)
    succeeded while some certificate was revoked, and after."""
    if o.op == "call":
        return checkers.mutual_call(o)
    return checkers.succeeded_as(o)


def still_works_whole(ops: Sequence[Operation]) -> list[str]:
    out = []
    for phase in ("during", "after"):
        targets = {o.target for o in ops if o.details.get("phase") == phase}
        out += [f"no valid request to {s} {phase} the revocation" for s in STACKS if s not in targets]
    return out


def renewal_refused(o: Operation) -> str | None:
    """The RA refused a renewal proof signed with a revoked certificate's key, saying why."""
    d = o.details
    why = _revoked_by_ztca(d, str(d["presented_serial"]))
    if why:
        return why
    if o.outcome != "fail" or d.get("status") not in (401, 403):
        return f"the RA answered {d.get('status')} (new serial {d.get('new_serial')}), expected 401/403"
    if d.get("error") != "revoked_certificate":
        return f"the RA refused with {d.get('error')!r} ({d.get('reason')}), expected revoked_certificate"
    return None


def by_service(o: Operation) -> str | None:
    """`ztca revoke --service` revoked every live certificate (op "revoke"), and each of those is
    refused (op "hello": a direct probe, judged like m3.revoked_refused)."""
    d = o.details
    if o.op == "revoke":
        live = {norm_serial(s) for s in d["live_before"]}
        revoked = {norm_serial(s) for s in d["revoked_serials"]}
        if len(live) < 2:
            return f"only {len(live)} live certificate(s) before: the check needs several"
        missing = live - revoked
        return f"live certificates not revoked: {sorted(missing)}" if missing else None
    return refused_as_revoked(o)


def by_service_whole(ops: Sequence[Operation]) -> list[str]:
    """Every certificate the revocation named was probed and refused on both stacks."""
    out = []
    for r in (o for o in ops if o.op == "revoke"):
        for serial in r.details["revoked_serials"]:
            for s in STACKS:
                if not any(
                    o.op == "hello"
                    and o.target == s
                    and norm_serial(o.details["presented_serial"]) == norm_serial(serial)
                    for o in ops
                ):
                    out.append(f"revoked serial {serial} was never presented to {s}")
    if not any(o.op == "revoke" for o in ops):
        out.append("no `ztca revoke --service` recorded")
    return out


def recovered(o: Operation) -> str | None:
    """After re-registration: the agent wrote a new, unrevoked certificate (op "bootstrap"), the
    service serves it (op "serve"), and calls in both directions succeed with it (op "call")."""
    d = o.details
    if o.op == "bootstrap":
        if o.outcome != "ok" or not d.get("new_serial"):
            return f"the agent wrote no new certificate within {d.get('waited_s')} s (still {d.get('old_serial')})"
        if norm_serial(d["new_serial"]) in {norm_serial(s) for s in d["revoked_serials"]}:
            return f"the agent's new serial {d['new_serial']} is a revoked one"
        return None
    if o.op == "serve":
        if o.outcome != "ok" or norm_serial(d.get("serving_serial")) != norm_serial(d.get("agent_serial")):
            return f"the service serves {d.get('serving_serial')}, not the agent's new {d.get('agent_serial')}"
        return None
    if o.op == "call":
        return checkers.mutual_call(o)
    return f"unknown op {o.op!r}"


def recovered_whole(ops: Sequence[Operation]) -> list[str]:
    ops_seen = Counter(o.op for o in ops)
    out = [f"no {op} evidence" for op in ("bootstrap", "serve") if not ops_seen[op]]
    if ops_seen["call"] < 2:
        out.append("calls in both directions were not both recorded")
    return out


def _revocation_preconditions(d: dict[str, object]) -> str | None:
    """A timing trial means something only if the certificate was accepted before it was revoked."""
    if not d.get("accepted_before"):
        return f"the certificate was not accepted before its revocation ({d.get('before')}): the trial proves nothing"
    return _revoked_by_ztca(d, str(d["presented_serial"]))


def refused_within_bound(o: Operation) -> str | None:
    """One latency trial: after `ztca revoke` returned, new handshakes were refused within the
    bound, and the server counted the refusal as revoked. The time itself is a figure."""
    d = o.details
    why = _revocation_preconditions(d)
    if why:
        return why
    probe = d["probe"]
    after = d["refused_after_return_s"]
    if after is None:
        n, closed = probe["accepted_after_revoke"], probe.get("closed_unanswered", 0)
        return f"no refusal {BOUND} s after ztca revoke returned ({n} handshakes accepted, {closed} closed unanswered)"
    if float(after) > BOUND:
        return f"first refused {after} s after ztca revoke returned, over the {BOUND} s bound"
    if float(d.get("server_revoked_delta", 0)) < 1:
        return f"refused ({probe['first_refusal']}) but the server counted no failure with reason revoked"
    return None


def latency_whole(ops: Sequence[Operation]) -> list[str]:
    per_stack = Counter(o.target for o in ops)
    out = []
    if len(ops) < MIN_LATENCY_TRIALS:
        out.append(f"{len(ops)} trials, at least {MIN_LATENCY_TRIALS} needed")
    out += [f"only {per_stack[s]} trials against {s}" for s in STACKS if per_stack[s] < MIN_LATENCY_TRIALS // 2]
    return out


def connection_cut_revoked(o: Operation) -> str | None:
    """A keep-alive connection opened (and served) before the revocation stopped being served
    within the bound, and the server counted it closed for revocation."""
    d = o.details
    why = _revocation_preconditions(d)
    if why:
        return why
    if norm_serial(d.get("served_caller_serial")) != norm_serial(d["presented_serial"]):
        served = d.get("served_caller_serial")
        return f"the open connection was served as {served}, not the revoked {d['presented_serial']}"
    cut = d["cut"]
    if d["cut_after_return_s"] is None or float(d["cut_after_return_s"]) > BOUND:
        n = cut["served_after_event"] if cut else "?"
        return f"the open connection was still served {BOUND} s after the revocation ({n} requests)"
    if float(d.get("server_closed_delta", 0)) < 1:
        return f"the connection ended ({cut['cut']}) but the server counted no connection closed with reason revoked"
    return None


def stacks_whole(ops: Sequence[Operation]) -> list[str]:
    seen = {o.target for o in ops}
    return [f"no evidence against {s}" for s in STACKS if s not in seen]


EXPIRY_SLACK = 1.0  # seconds: clocks of the host and the services agree to better than this


def connection_cut_expired(o: Operation) -> str | None:
    """A keep-alive connection of a client whose certificate expired (and was not renewed) was
    served until the expiry and ended after it, within the bound; the server says why (its
    counter, or a 401 peer_certificate_expired before closing)."""
    d = o.details
    cut = d["cut"]
    if not d.get("served_before_expiry"):
        return "the connection was never served before the certificate expired: the check proves nothing"
    if cut["cut_after_s"] is None:
        return f"still served {cut['bound_s']} s after the certificate expired"
    at = float(cut["cut_after_s"])  # seconds after notAfter (negative: before)
    if at < -EXPIRY_SLACK:
        return f"the connection ended {-at:.1f} s before the certificate expired: not an expiry cut"
    body = (cut.get("cut") or {}).get("status"), d.get("cut_body_error")
    if float(d.get("server_closed_delta", 0)) < 1 and body != (401, "peer_certificate_expired"):
        return f"the connection ended ({cut['cut']}) but the server counted no close with reason expired"
    return None


M3 = (
    Criterion(
        "m3.revoked_refused",
        3,
        "ztca revoke <serial>: new handshakes with that certificate are refused as revoked (both stacks)",
        refused_as_revoked,
        whole=revoked_refused_whole,
    ),
    Criterion(
        "m3.valid_still_works",
        3,
        "valid identities keep getting 200 during and after a revocation",
        still_works,
        whole=still_works_whole,
    ),
    Criterion(
        "m3.revoked_cannot_renew", 3, "the RA refuses a renewal proof made with a revoked certificate", renewal_refused
    ),
    Criterion(
        "m3.revoke_by_service",
        3,
        "ztca revoke --service NAME revokes every live certificate of NAME, and each is refused",
        by_service,
        whole=by_service_whole,
    ),
    Criterion(
        "m3.recovery",
        3,
        "after ztca register --reenable and a new token the agent bootstraps, the service serves the new certificate",
        recovered,
        whole=recovered_whole,
    ),
    Criterion(
        "m3.latency",
        3,
        f"revoke -> first refused handshake, >= {MIN_LATENCY_TRIALS} trials on both stacks, none over {BOUND:.0f} s",
        refused_within_bound,
        whole=latency_whole,
    ),
    Criterion(
        "m3.open_connection_cut",
        3,
        "a keep-alive connection of a revoked client stops being served (both stacks)",
        connection_cut_revoked,
        whole=stacks_whole,
    ),
    Criterion(
        "m3.expired_connection_cut",
        3,
        "a keep-alive connection of a client whose certificate expired is ended (both stacks)",
        connection_cut_expired,
        whole=stacks_whole,
    ),
)
