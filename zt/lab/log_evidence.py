"""A run's logs as evidence: the schema of every line, the events a scenario caused, leaks.

The logs are the files `RunningLab.collect_logs` gathers (one per component, plus the host's
agents and `ztca`). Prometheus's own log is not a zt component's and follows its own format;
it is scanned for secrets but not held to the zt schema (CONTRACT L).

`zt.logschema` (the schema's loader) is imported when first needed: a tree without it judges
the schema criterion UNKNOWN (no evidence), never PASS.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zt.lab import rotations
from zt.lab.revocation_probe import norm_serial

NOT_ZT = ("prometheus",)  # logs of what is not a zt component
SERIAL_FIELDS = ("serial", "old_serial", "new_serial", "peer_serial", "renews")
TIME_FIELDS = ("not_after", "not_before", "next_update", "this_update", "token_expires")


def component_of(log: Path) -> str:
    return log.name.removesuffix(".log")


def zt_logs(logs: Iterable[Path]) -> list[Path]:
    return [p for p in logs if component_of(p) not in NOT_ZT]


@dataclass(frozen=True)
class SchemaResult:
    component: str
    lines: int
    errors: tuple[str, ...]  # "line N: why", the first few


def validate(log: Path, limit: int = 10) -> SchemaResult:
    """Every line of `log` against the zt log line schema (ImportError: no schema in the tree)."""
    from zt import logschema  # type: ignore[attr-defined,unused-ignore]

    lines = sum(1 for ln in log.read_text(errors="replace").splitlines() if ln.strip())
    problems = [f"line {n}: {why}" for n, why in logschema.validate_file(log)]
    return SchemaResult(component_of(log), lines, tuple(problems[:limit]) + (("...",) if len(problems) > limit else ()))


def events(log_text: str) -> list[dict[str, Any]]:
    """The JSON objects among a log's lines (anything else is the schema check's business)."""
    return rotations.log_events(log_text)


def _same(field: str, seen: Any, want: Any) -> bool:
    if field in SERIAL_FIELDS:
        return seen is not None and norm_serial(seen) == norm_serial(want)
    if field in TIME_FIELDS:
        return _instant(seen) is not None and _instant(seen) == _instant(want)
    if field == "serials":
        return isinstance(seen, list) and {norm_serial(s) for s in want} <= {norm_serial(s) for s in seen}
    return bool(seen == want)


def _instant(value: Any) -> float | None:
    """An RFC 3339 time as a unix second (fractions dropped: certificates hold whole seconds)."""
    try:
        return float(int(dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()))
    except ValueError:
        return None


def find(docs: Iterable[dict[str, Any]], event: str, **want: Any) -> list[dict[str, Any]]:
    """The `event` lines whose fields equal `want` (serials compared as integers' hex; for
    `serials`, every wanted serial listed; times as instants)."""
    return [d for d in docs if d.get("event") == event and all(_same(k, d.get(k), v) for k, v in want.items())]
