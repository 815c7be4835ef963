"""Milestone 2's criteria: rotation under load, proven per request (issue 10).

The verdict rules are zt.lab.checkers' (pass / fail / unknown, unknown never passes). The
operations these predicates read are built by zt.lab.rotation_history from three kinds of
evidence: the load's per-request journal, the agents' logs (each generation written), and
metrics scraped from agents and services before and after the load. What each operation's
`details` hold is documented there; here is only what each criterion demands of them.

A rotation test that passes with no rotation is a known failure of other projects, so
"nothing happened" is never a pass here: fewer than five rotations per service, fewer than six
serials presented, no manual rotation, fewer than 1,000 requests, or no keep-alive connection
that lived across a rotation, each fails its criterion by name.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from zt.lab.checkers import Criterion
from zt.lab.history import Operation
from zt.lab.rotation_history import SUPERSEDED_S

MIN_ROTATIONS = 5  # per service, new generations written during the load
MIN_SERIALS = 6  # per service, distinct serials presented to clients: the first and >= 5 new
MIN_REQUESTS = 1000


def _when(t: float | None) -> str:
    return "never" if t is None else f"{t:.3f}"


# -- m2.rotations_happened ---------------------------------------------------------------------


def rotation_presented(o: Operation) -> str | None:
    """A generation written during the load (`generation`), a manual rotation asked for
    (`manual`), or what a service presented (`presented`, judged as a whole)."""
    d = o.details
    if o.op == "generation":
        if not d["judged"]:
            return None  # written too close to the end of the load to be seen; not counted
        if d["first_presented_at"] is None:
            return (
                f"{d['service']}: serial {d['new_serial']} written at {_when(d['written_at'])} was never presented "
                f"to a new connection (the load ran until {_when(d['load_end'])})"
            )
        if d["pickup_s"] > d["bound_s"]:
            return (
                f"{d['service']}: serial {d['new_serial']} was first presented {d['pickup_s']:.1f} s after it was "
                f"written (bound {d['bound_s']} s)"
            )
        return None
    if o.op == "manual":
        if d.get("error"):
            return f"{d['service']}: the manual rotation could not be asked for: {d['error']}"
        if d.get("trigger") != "manual":
            return (
                f"{d['service']}: no generation with trigger manual was written within {d['bound_s']} s of the "
                f"SIGUSR1 at {d['requested_at']:.3f}"
            )
        return None
    return None


def enough_rotations(ops: Sequence[Operation]) -> list[str]:
    """Per service: >= 5 rotations written (and judged), >= 6 serials presented, >= 1 manual."""
    written: Counter[str] = Counter()
    manual: Counter[str] = Counter()
    serials: dict[str, int] = {}
    for o in ops:
        d = o.details
        if o.op == "generation" and d["judged"]:
            written[d["service"]] += 1
        elif o.op == "manual" and d.get("trigger") == "manual":
            manual[d["service"]] += 1
        elif o.op == "presented":
            serials[d["service"]] = len(d["serials"])
    if not serials:
        return ["no record of what the services presented: the load produced no evidence"]
    out = []
    for service, n in sorted(serials.items()):
        if written[service] < MIN_ROTATIONS:
            out.append(
                f"{service}: {written[service]} rotations written by its agent during the load, need {MIN_ROTATIONS}"
            )
        if n < MIN_SERIALS:
            out.append(f"{service}: {n} distinct serials presented to clients, need {MIN_SERIALS}")
        if manual[service] < 1:
            out.append(f"{service}: no manual rotation (SIGUSR1) was observed")
    return out


# -- m2.no_failed_requests ---------------------------------------------------------------------


def request_ok(o: Operation) -> str | None:
    d = o.details
    if o.op == "journal":
        problems = []
        if d["no_outcome"]:
            problems.append(f"{d['no_outcome']} requests never reported an outcome")
        if d["orphans"]:
            problems.append(f"{d['orphans']} outcomes without a matching invoke")
        if d["locust_exit"] not in (0, 1):  # 1: locust saw failures, which are named per request
            problems.append(f"locust exited with {d['locust_exit']}")
        return "; ".join(problems) or None
    if o.outcome == "ok":
        return None
    why = d.get("error") or f"status {d.get('status')}"
    if d.get("error") is None and d.get("kind") == "call" and d.get("status") == 200:
        why = f"upstream status {(d.get('hops') or {}).get('upstream_status')}"
    detail = d.get("detail") or d.get("body") or ""
    return f"request {d.get('id')} ({d.get('kind')} {d.get('path')}) at {_when(d.get('start'))} failed: {why} {detail}"


def enough_requests(ops: Sequence[Operation]) -> list[str]:
    n = sum(o.op in ("hello", "call") for o in ops)
    return [] if n >= MIN_REQUESTS else [f"{n} requests recorded, need at least {MIN_REQUESTS}"]


# -- m2.open_connections_complete --------------------------------------------------------------


def connection_completes(o: Operation) -> str | None:
    d = o.details
    if o.op == "old_connection":
        if not d["requests_after"]:
            return f"{d['service']}: connection {d['conn_id']} had no request after the rotation"
        for r in d["requests_after"]:
            if r["error"] is not None or r["status"] != 200:
                return (
                    f"{d['service']}: connection {d['conn_id']} opened on {d['old_serial']} failed request {r['id']} "
                    f"after the rotation to {d['new_serial']}: {r['error'] or r['status']}"
                )
            if r["serial"] != d["old_serial"]:
                return f"{d['service']}: connection {d['conn_id']} changed serial mid-connection to {r['serial']}"
        return None
    if o.op == "new_connections":
        if d["stale"]:
            return (
                f"{d['service']}: {len(d['stale'])} new connections opened more than {d['bound_s']} s after "
                f"{d['new_serial']} was written still presented the old serial {d['old_serial']} "
                f"(first: {d['stale'][:3]})"
            )
        if d["count"] == 0:
            failed = d.get("unopened", 0)
            why = f" ({failed} attempts failed their handshake: {d.get('unopened_errors')})" if failed else ""
            return f"{d['service']}: no new connection after the rotation to {d['new_serial']} to show it{why}"
        return None
    return None


def connections_span_rotations(ops: Sequence[Operation]) -> list[str]:
    """Each service had at least one keep-alive connection served across one of its rotations."""
    spans: dict[str, int] = defaultdict(int)
    services = set()
    for o in ops:
        services.add(o.details["service"])
        if o.op == "old_connection":
            spans[o.details["service"]] += 1
    return [f"{s}: no keep-alive connection lived across a rotation" for s in sorted(services) if not spans[s]]


# -- m2.metrics ----------------------------------------------------------------------------


def metrics_agree(o: Operation) -> str | None:
    d = o.details
    if o.op in ("agent_rotations", "service_rotations"):
        rose = d["after"] - d["before"]
        who = "agent's rotation_success_total" if o.op == "agent_rotations" else "service's mtls_rotation_total"
        # A generation replaced within a second (rotation_history.SUPERSEDED_S) may have been
        # loaded or skipped by the service: its counter may be short by those, never more.
        skipped = d.get("superseded", 0)
        if not d["rotations"] - skipped <= rose <= d["rotations"]:
            also = f" ({skipped} of them replaced within {SUPERSEDED_S:g} s)" if skipped else ""
            return (
                f"{d['service']}: the {who} rose by {rose:g}, but {d['rotations']} rotations were observed "
                f"between the scrapes{also}"
            )
        return None
    if o.op == "cert_age":
        if d["samples"] < 10:
            return f"{d['service']}: only {d['samples']} cert_age_seconds samples"
        if d["max_age"] > d["limit"]:
            return (
                f"{d['service']}: cert_age_seconds reached {d['max_age']:.1f} s, past the renewal point plus slack "
                f"({d['limit']:.1f} s)"
            )
        return None
    return None


M2 = (
    Criterion(
        "m2.rotations_happened",
        2,
        "each service rotated >= 5 times (one manual) and presented >= 6 serials, each soon after it was written",
        rotation_presented,
        whole=enough_rotations,
    ),
    Criterion(
        "m2.no_failed_requests",
        2,
        "no failed request among >= 1,000 under rotation, every request accounted for",
        request_ok,
        whole=enough_requests,
    ),
    Criterion(
        "m2.open_connections_complete",
        2,
        "keep-alive connections opened before a rotation are served after it on the old serial; new ones get the new",
        connection_completes,
        whole=connections_span_rotations,
    ),
    Criterion(
        "m2.metrics",
        2,
        "rotation_success_total and mtls_rotation_total rose by the rotations observed; cert_age within renewal point",
        metrics_agree,
    ),
)
