"""Milestone 3, the CRL's own criteria: a stale CRL, a large CRL, and every CRL valid.

The verdict rules are zt.lab.checkers'; these are the predicates over what the scenarios
(scenarios/test_m3_stale_crl.py, scenarios/test_m3_large_crl.py) recorded through
zt.lab.crl_probes. Each operation carries raw observations (the client's error, the server's
counters and gauges before and after, the service's own log lines); the predicates decide.

- `m3.stale_crl`: once the CRL a service holds is past nextUpdate (the publisher stopped), a
  service in `--crl-stale refuse` refuses every handshake, saying `crl_stale` in its log and
  metrics; one in `warn` keeps serving and says the CRL is stale; both serve on a fresh CRL
  once the publisher is back.
- `m3.large_crl`: with a 100 000-entry CRL in force, both services loaded it, still answer a
  valid client and still refuse a revoked one (the handshake rates are figures, not verdicts).
- `m3.crls_valid`: every CRL the publisher served passes pkilint and `openssl crl -verify`.
"""

from __future__ import annotations

from collections.abc import Sequence

from zt.lab import checkers
from zt.lab.checkers import Criterion
from zt.lab.history import Operation

LARGE_CRL_ENTRIES = 100_000


def _logged(d: dict[str, object], key: str) -> list[dict[str, object]]:
    lines = d.get(key, [])
    return [x for x in lines if isinstance(x, dict)] if isinstance(lines, list) else []


def stale_behaviour(o: Operation) -> str | None:
    """One observation of a service, by what the scenario did at that point (`o.op`)."""
    d = o.details
    if o.op == "stale_handshake":
        return _stale_handshake(o)
    if o.op == "recovered":
        if o.outcome != "ok" or d.get("status") != 200:
            return f"after the publisher came back: {d.get('status')} {d.get('error')} {d.get('reason')}"
        if d.get("metric_crl_stale") != 0:
            return f"mtls_crl_stale is {d.get('metric_crl_stale')} on a fresh CRL"
        if float(d["crl_next_update"]) <= o.start:
            return f"the CRL loaded (nextUpdate {d['crl_next_update']}) is not fresh"
        return None
    return f"unexpected operation {o.op!r}"


def _stale_handshake(o: Operation) -> str | None:
    d = o.details
    mode = d["mode"]
    if float(d["crl_next_update"]) <= 0 or o.start <= float(d["crl_next_update"]):
        return f"probed at {o.start:.1f}, before the CRL's nextUpdate {d['crl_next_update']}: not stale yet"
    if d.get("metric_crl_stale") != 1:
        return f"mtls_crl_stale is {d.get('metric_crl_stale')}, not 1, on a stale CRL"
    alarms = [x for x in _logged(d, "crl_stale_logged") if x.get("mode") == mode]
    if not alarms:
        return f"no crl_stale log line with mode {mode!r} (saw {_logged(d, 'crl_stale_logged')[:3]})"
    if mode == "warn":
        if o.outcome != "ok" or d.get("status") != 200:
            return f"warn mode must keep serving; got {d.get('status')} {d.get('error')} {d.get('reason')}"
        return None
    if o.outcome != "fail":
        return f"refuse mode must refuse; got status {d.get('status')}"
    if d.get("server_reason_delta", 0) < 1:
        return "the server did not count mtls_handshake_failures_total{reason=crl_stale}"
    if not [x for x in _logged(d, "rejections_logged") if x.get("reason") == "crl_stale"]:
        return "no handshake_rejected log line with reason crl_stale"
    return None


def stale_coverage(ops: Sequence[Operation]) -> list[str]:
    """Both modes were seen stale with the publisher stopped, and every such service recovered."""
    why = []
    stale = [o for o in ops if o.op == "stale_handshake"]
    for mode in ("refuse", "warn"):
        if not [o for o in stale if o.details.get("mode") == mode and o.details.get("publisher") == "stopped"]:
            why.append(f"no {mode}-mode service was probed on a stale CRL with the publisher stopped")
    recovered = {o.target for o in ops if o.op == "recovered"}
    for service in sorted({o.target for o in stale} - recovered):
        why.append(f"{service} was never seen serving again on a fresh CRL")
    return why


def _large_crl_kind(o: Operation) -> str:
    """crl_loaded, or a /hello (zt.lab.clients) by a valid client or by a revoked one."""
    if o.op == "hello":
        return "revoked_client" if "expected_server_reason" in o.details else "valid_client"
    return o.op


def large_crl_behaviour(o: Operation) -> str | None:
    d = o.details
    kind = _large_crl_kind(o)
    if kind == "crl_loaded":
        entries = d.get("metric_crl_entries", 0)
        return None if entries >= d["expected_entries"] else f"mtls_crl_entries {entries} < {d['expected_entries']}"
    if kind == "valid_client":
        return checkers.succeeded_as(o)
    if kind == "revoked_client":
        return checkers.refused_for(o)
    return f"unexpected operation {o.op!r}"


def large_crl_coverage(ops: Sequence[Operation]) -> list[str]:
    """Each service loaded the large CRL, answered a valid client and refused a revoked one."""
    why = []
    for service in sorted({o.target for o in ops}):
        seen = {_large_crl_kind(o) for o in ops if o.target == service}
        for kind in ("crl_loaded", "valid_client", "revoked_client"):
            if kind not in seen:
                why.append(f"{service}: no {kind} observation with the large CRL in force")
    loaded = [o for o in ops if o.op == "crl_loaded"]
    if loaded and min(int(o.details["expected_entries"]) for o in loaded) < LARGE_CRL_ENTRIES:
        why.append(f"the CRL in force had fewer than {LARGE_CRL_ENTRIES} entries")
    return why


def some_crl(ops: Sequence[Operation]) -> list[str]:
    return [] if ops else ["no CRL was collected"]


M3_CRL = (
    Criterion(
        "m3.stale_crl",
        3,
        "a stale CRL: refuse mode refuses every handshake (crl_stale), warn mode serves and says so; both recover",
        stale_behaviour,
        whole=stale_coverage,
    ),
    Criterion(
        "m3.large_crl",
        3,
        "a 100,000-entry CRL in force: both services load it, serve valid clients, refuse a revoked one",
        large_crl_behaviour,
        whole=large_crl_coverage,
    ),
    Criterion(
        "m3.crls_valid",
        3,
        "every CRL the run served passes pkilint (RFC 5280) and openssl crl -verify against the intermediate",
        checkers.validated,
        whole=some_crl,
    ),
)
