"""Milestone 4's checkers: observability, judged from the run's history (issue 12).

Operations carry raw observations (log lines as the components wrote them, values as the
lab's Prometheus server answered them, `ztca audit verify`'s exit code and output, the audit
file's entries and the CA's certificate list); these predicates decide:

- m4.log_schema: every line of every zt component's log in the run validates against the
  one schema (CONTRACT L), and the lines come from every kind of component;
- m4.events: an issuance, a rotation (agent and service), a rejected handshake and a
  revocation the scenario caused are each in the logs, with the serials the scenario knows;
- m4.metrics: asked of Prometheus, not the components: the handshake counters rose by exactly
  the requests the scenario made and had refused, `mtls_cert_expiry_seconds` is the seconds
  until the served certificate's notAfter (CONTRACT M), rotation counters match rotations;
- m4.audit: `ztca audit verify` passes on the run's audit log, and its issue, renew and revoke
  entries are exactly the certificates the CA issued and revoked;
- m4.no_secrets: no log of the run contains any secret the run created.
"""

from __future__ import annotations

from collections.abc import Sequence

from zt.lab.checkers import Criterion
from zt.lab.history import Operation
from zt.lab.log_evidence import find
from zt.lab.revocation_probe import norm_serial

STACKS = ("service-a", "service-b")
# The `component` values the run's lines must include: every kind of zt component logged.
COMPONENTS = ("zt-ra", "zt-crl", "zt-agent", "ztca", "service-a", "service-b")
EVENT_KINDS = ("issuance", "rotation", "rejected_handshake", "revocation")
EXPIRY_TOLERANCE_S = 2.0  # whole seconds in the metric, plus the scrape's own duration


# -- m4.log_schema ---------------------------------------------------------------------------------


def lines_valid(o: Operation) -> str | None:
    """One component's log: every line validates against the schema."""
    d = o.details
    if o.outcome != "ok" or d.get("errors"):
        return f"{d.get('lines')} lines, invalid: {list(d.get('errors') or [])[:5]}"
    return None


def schema_whole(ops: Sequence[Operation]) -> list[str]:
    seen = {c for o in ops for c in o.details.get("components", [])}
    return [f"no log line from component {c}" for c in COMPONENTS if c not in seen]


# -- m4.events -------------------------------------------------------------------------------------


def event_logged(o: Operation) -> str | None:
    """The event the scenario caused is among the lines of that event in the component's log,
    with every field the scenario knows (serials as integers)."""
    d = o.details
    want = dict(d["expected"])
    if find(d["seen"], d["event"], **want):
        return None
    return f"no {d['event']} line in {d['log']} with {want}; saw {list(d['seen'])[:3]}"


def events_whole(ops: Sequence[Operation]) -> list[str]:
    kinds = {str(o.details.get("kind")) for o in ops}
    out = [f"no evidence of a {k} event" for k in EVENT_KINDS if k not in kinds]
    rotated = {
        (o.target, o.details.get("log", "").startswith("agent-")) for o in ops if o.details["kind"] == "rotation"
    }
    out += [
        f"no rotation line from {s}'s {who}"
        for s in STACKS
        for who, agent in (("agent", True), ("service", False))
        if (s, agent) not in rotated
    ]
    rejected = {o.target for o in ops if o.details["kind"] == "rejected_handshake"}
    out += [f"no rejected handshake checked on {s}" for s in STACKS if s not in rejected]
    return out


# -- m4.metrics ------------------------------------------------------------------------------------


def _handshakes(d: dict[str, object]) -> str | None:
    before, after = d["before"], d["after"]
    assert isinstance(before, dict) and isinstance(after, dict)
    out = []
    for result, made in (("success", d["made_ok"]), ("failure", d["made_refused"])):
        rose = float(after[result]) - float(before[result])
        if rose != float(str(made)):
            out.append(f"{result} rose by {rose:g}, the scenario made {made}")
    return "; ".join(out) or None


def _expiry(d: dict[str, object]) -> str | None:
    value, at, not_after = float(str(d["value"])), float(str(d["scraped_at"])), float(str(d["not_after"]))
    if norm_serial(d["served_serial"]) != norm_serial(d["agent_serial"]):
        return f"Prometheus saw serial {d['served_serial']} served, the agent wrote {d['agent_serial']}"
    if value <= 0:
        return f"mtls_cert_expiry_seconds is {value:g}: not in the future"
    want = not_after - at
    if abs(value - want) > EXPIRY_TOLERANCE_S:
        return f"mtls_cert_expiry_seconds is {value:g}, the certificate expires {want:.0f} s after that scrape"
    return None


def _rotations(d: dict[str, object]) -> str | None:
    rose = float(str(d["after"])) - float(str(d["before"]))
    if rose != float(str(d["rotations"])):
        return f"{d['metric']} rose by {rose:g}, the scenario made {d['rotations']} rotation(s)"
    return None


def prometheus_saw(o: Operation) -> str | None:
    """What Prometheus scraped agrees with what the scenario did (by kind)."""
    if o.outcome != "ok":
        return f"no answer from Prometheus: {o.details.get('error')}"
    kind = o.details["kind"]
    checks = {"handshakes": _handshakes, "expiry": _expiry, "rotations": _rotations}
    if kind not in checks:
        return f"unknown kind {kind!r}"
    return checks[kind](o.details)


def metrics_whole(ops: Sequence[Operation]) -> list[str]:
    have = {(str(o.details.get("kind")), o.target) for o in ops}
    want = [(k, s) for k in ("handshakes", "expiry") for s in STACKS]
    want += [("rotations", t) for s in STACKS for t in (s, f"agent-{s}")]
    return [f"no {k} evidence for {t}" for k, t in want if (k, t) not in have]


# -- m4.audit --------------------------------------------------------------------------------------


def audit_holds(o: Operation) -> str | None:
    """`verify`: `ztca audit verify` exited 0. `entries`: the audit file's issue/renew subjects
    are exactly the serials the CA lists, its revoke subjects exactly the revoked ones."""
    d = o.details
    if d["kind"] == "verify":
        if d.get("exit_code") != 0:
            return f"ztca audit verify exited {d.get('exit_code')}: {str(d.get('output'))[-300:]}"
        return None
    issued = {norm_serial(s) for s in d["ca_issued"]}
    revoked = {norm_serial(s) for s in d["ca_revoked"]}
    a_issued = {norm_serial(s) for s in d["audit_issued"]}
    a_revoked = {norm_serial(s) for s in d["audit_revoked"]}
    out = []
    if issued - a_issued:
        out.append(f"issued without an audit entry: {sorted(issued - a_issued)[:5]}")
    if a_issued - issued:
        out.append(f"audit issue/renew entries for unknown serials: {sorted(a_issued - issued)[:5]}")
    if revoked != a_revoked:
        out.append(f"revoked {sorted(revoked)[:5]}, audit revoke entries {sorted(a_revoked)[:5]}")
    if not revoked:
        out.append("the run revoked nothing: no evidence for revocation entries")
    return "; ".join(out) or None


def audit_whole(ops: Sequence[Operation]) -> list[str]:
    kinds = {o.details.get("kind") for o in ops}
    return [f"no {k} evidence" for k in ("verify", "entries") if k not in kinds]


# -- m4.no_secrets ---------------------------------------------------------------------------------


def no_leak(o: Operation) -> str | None:
    """One log: none of the run's secrets appears in it."""
    leaked = o.details.get("leaked")
    return f"secrets in the log: {leaked}" if leaked else None


def secrets_whole(ops: Sequence[Operation]) -> list[str]:
    """The scan looked for something: keys and tokens of the run were found to look for."""
    counts = ops[0].details.get("secret_kinds", {}) if ops else {}
    return [f"the scan found no {k} to look for" for k in ("key", "token") if not counts.get(k)]


M4 = (
    Criterion(
        "m4.log_schema",
        4,
        "every log line of every zt component validates against the one schema",
        lines_valid,
        schema_whole,
    ),
    Criterion(
        "m4.events",
        4,
        "issuance, rotation, rejected handshake and revocation are logged with the right serials",
        event_logged,
        events_whole,
    ),
    Criterion(
        "m4.metrics",
        4,
        "Prometheus saw the handshakes, the seconds until expiry and the rotations the scenario caused",
        prometheus_saw,
        metrics_whole,
    ),
    Criterion(
        "m4.audit",
        4,
        "ztca audit verify passes and the audit log holds exactly the certificates issued and revoked",
        audit_holds,
        audit_whole,
    ),
    Criterion(
        "m4.no_secrets",
        4,
        "no log of the run contains a key, token or keystore password the run created",
        no_leak,
        secrets_whole,
    ),
)
