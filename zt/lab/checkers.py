"""Checkers: turn a run's history into verdicts, one per exit criterion.

Each criterion names the operations that are evidence for it and a predicate that says, for
one operation, whether what was observed is what the criterion demands. The verdict is:
- pass: at least one relevant operation, and every one of them satisfies the predicate;
- fail: some relevant operation definitely contradicts it;
- unknown: no relevant operation was seen, or some outcome is unknown (a timeout), or the
  predicate could not judge an operation (it raised, e.g. on a missing key in the details:
  the exception text is kept in `errors`), and none failed. Unknown is never a pass; CI
  treats it as a failure. A checker never crashes on the evidence it judges.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from zt.lab.history import History, Operation

Result = Literal["pass", "fail", "unknown"]
Predicate = Callable[[Operation], str | None]  # None when the operation satisfies it, else why not
# Over all of a criterion's operations at once: what no single operation shows ("at least five
# rotations", "at least 1,000 requests"). Returns the violations, empty when satisfied.
WholePredicate = Callable[[Sequence[Operation]], list[str]]


@dataclass(frozen=True)
class Criterion:
    id: str
    milestone: int
    title: str
    predicate: Predicate | None = field(repr=False)  # None: only `whole` judges
    whole: WholePredicate | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Verdict:
    criterion: Criterion
    result: Result
    operations: int
    ok: int
    failed: int
    unknown: int
    violations: tuple[str, ...]
    first: float | None
    last: float | None
    errors: tuple[str, ...] = ()  # operations the predicate could not judge, with the exception
    note: str | None = None  # why there is no evidence, when the lab knows (no scenario yet)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.criterion.id,
            "milestone": self.criterion.milestone,
            "title": self.criterion.title,
            "verdict": self.result,
            "evidence": {"operations": self.operations, "ok": self.ok, "fail": self.failed, "unknown": self.unknown},
            "violations": list(self.violations[:20]),
            "errors": list(self.errors[:20]),
            "note": self.note,
            "window": {"first": self.first, "last": self.last},
        }


def check(criterion: Criterion, history: History, *, note: str | None = None) -> Verdict:
    ops = history.operations(criterion.id)
    violations: list[str] = []
    errors: list[str] = []
    unknown = 0
    for o in ops:
        if o.outcome == "unknown":
            unknown += 1
            continue
        if criterion.predicate is None:
            continue
        try:
            why = criterion.predicate(o)
        except Exception as e:  # noqa: BLE001 - evidence the predicate cannot read is no verdict, not a crash
            name = getattr(criterion.predicate, "__name__", "?")
            errors.append(f"{o.actor} {o.op} {o.target}: predicate {name} raised {type(e).__name__}: {e}")
            continue
        if why is not None:
            violations.append(f"{o.actor} {o.op} {o.target}: {why}")
    if criterion.whole is not None and ops:
        try:
            violations += [f"all operations: {why}" for why in criterion.whole(ops)]
        except Exception as e:  # noqa: BLE001 - as above
            name = getattr(criterion.whole, "__name__", "?")
            errors.append(f"all operations: predicate {name} raised {type(e).__name__}: {e}")
    if violations:
        result: Result = "fail"
    elif not ops or unknown or errors:
        result = "unknown"
    else:
        result = "pass"
    return Verdict(
        criterion,
        result,
        len(ops),
        sum(o.outcome == "ok" for o in ops),
        sum(o.outcome == "fail" for o in ops),
        unknown,
        tuple(violations),
        min((o.start for o in ops), default=None),
        max((o.end for o in ops), default=None),
        tuple(errors),
        note,
    )


def not_passed(criteria: Sequence[Criterion], ops: Sequence[Operation]) -> list[str]:
    """A scenario's fail-fast summary of its own operations: one line per criterion that did not
    pass, with its first violations, predicate errors and unknown operations' errors."""
    mine = History()
    mine.extend(ops)
    lines = []
    for v in (check(c, mine) for c in criteria):
        if v.result == "pass":
            continue
        unknown = [
            f"{o.op} {o.target}: {o.details.get('error')}"
            for o in ops
            if o.criterion == v.criterion.id and o.outcome == "unknown"
        ]
        lines.append(f"{v.criterion.id} {v.result}: " + "; ".join([*v.violations[:5], *v.errors[:3], *unknown[:5]]))
    return lines


# -- predicates ------------------------------------------------------------------------------------


def mutual_call(o: Operation) -> str | None:
    """A /call through service X to service Y succeeded, each side saw the other's SPIFFE ID,
    and the serials presented are the ones the agents wrote."""
    d = o.details
    if o.outcome != "ok" or d.get("status") != 200:
        return f"call did not succeed: status {d.get('status')} {d.get('error')} {d.get('reason')}"
    body = d.get("body", {})
    answer = body.get("response", {})
    checks = {
        "peer SPIFFE ID seen by the caller": (body.get("peer"), d["callee_id"]),
        "peer serial seen by the caller": (body.get("peer_serial"), d["callee_agent_serial"]),
        "caller SPIFFE ID seen by the callee": (answer.get("caller"), d["caller_id"]),
        "caller serial seen by the callee": (answer.get("caller_serial"), d["caller_agent_serial"]),
        "callee's own serial": (answer.get("serial"), d["callee_agent_serial"]),
    }
    for what, (seen, want) in checks.items():
        if seen != want:
            return f"{what}: saw {seen!r}, expected {want!r}"
    return None


def succeeded_as(o: Operation) -> str | None:
    """A request with a lab identity got 200 and the server named the caller correctly."""
    d = o.details
    if o.outcome != "ok" or d.get("status") != 200:
        return f"request failed: {d.get('status')} {d.get('error')} {d.get('detail', '')[:200]}"
    if d.get("body", {}).get("caller") != d["caller_id"]:
        return f"server saw caller {d.get('body', {}).get('caller')!r}, expected {d['caller_id']!r}"
    return None


def refused_for(o: Operation) -> str | None:
    """A request that must be refused was refused, for the reason expected, on both sides:
    the client's error, and the server's own count of handshake failures with that reason."""
    d = o.details
    if o.outcome != "fail":
        return f"expected a refusal, got status {d.get('status')}"
    if d.get("client_error") not in d["expected_client_errors"]:
        return (
            f"client saw {d.get('client_error')!r}/{d.get('reason')!r}, expected one of {d['expected_client_errors']}"
        )
    if d.get("server_reason_delta", 0) < 1:
        return f"server did not count a handshake failure with reason {d['expected_server_reason']!r}"
    return None


def rejected_with(o: Operation) -> str | None:
    """An HTTP-level rejection: the right status and JSON error code."""
    d = o.details
    if o.outcome != "fail":
        return f"expected a rejection, got {d.get('status')}"
    if d.get("status") != d["expected_status"] or d.get("body", {}).get("error") != d["expected_error"]:
        return f"got {d.get('status')} {d.get('body')}, expected {d['expected_status']} {d['expected_error']}"
    return None


def validated(o: Operation) -> str | None:
    """A certificate passed every independent validator."""
    failures = {k: v for k, v in o.details.get("validators", {}).items() if v != "ok"}
    return None if o.outcome == "ok" and not failures else f"validators failed: {failures}"


M1 = (
    Criterion("m1.a_calls_b", 1, "service-a calls service-b over mTLS with certificates from our CA", mutual_call),
    Criterion("m1.b_calls_a", 1, "service-b calls service-a over mTLS with certificates from our CA", mutual_call),
    Criterion("m1.curl_a_to_b", 1, "curl with service-a's certificate reaches service-b", succeeded_as),
    Criterion("m1.no_client_cert", 1, "a client without a certificate is refused (both services)", refused_for),
    Criterion("m1.foreign_ca", 1, "a certificate from a foreign CA is refused (both services)", refused_for),
    Criterion("m1.wrong_identity", 1, "/call refuses a peer with the wrong SPIFFE ID (both services)", rejected_with),
    Criterion(
        "m1.certs_valid", 1, "every certificate issued passes openssl verify, pkilint and the SVID rules", validated
    ),
)
