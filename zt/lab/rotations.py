"""Rotation evidence from both sides: what the agents wrote, and what the services presented.

The agent side: every new generation an agent wrote, from its JSON log: `identity_written`
(serial, old_serial, generation, why) right after the `current` swap, and, for a rotation,
`rotation` (service, old_serial, new_serial, generation, trigger "schedule"|"manual") once
the service was signalled. Times are the log lines' `ts` (milliseconds, UTC).

The client side: the serial each new TLS connection of the load saw in the server's
certificate, and when its handshake completed (load/locustfile.py). The first connection that
presented a new serial gives the pickup delay: from the generation on disk to the first
handshake that presents it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Generation:
    """One identity an agent wrote: the bootstrap one (old_serial None) or a rotation."""

    service: str
    old_serial: str | None
    new_serial: str
    generation: str | None
    written_at: float  # unix time of the agent's log line
    trigger: str  # "bootstrap", "schedule", "manual" (or the older agent's `why`)

    @property
    def is_rotation(self) -> bool:
        return self.old_serial is not None and self.old_serial != self.new_serial


def _ts(value: Any) -> float | None:
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def log_events(text: str) -> list[dict[str, Any]]:
    """The JSON objects among a component's log lines (other lines are skipped)."""
    events = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            events.append(doc)
    return events


def agent_generations(service: str, log_text: str) -> list[Generation]:
    """Every generation the agent for `service` wrote, oldest first.

    The time is the `identity_written` line's (logged right after the `current` swap, before
    the service is signalled); the `rotation` line (logged after the signal) adds the trigger.
    """
    events = log_events(log_text)
    written = {str(e.get("serial")): e for e in events if e.get("event") == "identity_written"}
    rotations = {str(e.get("new_serial")): e for e in events if e.get("event") == "rotation"}
    out: list[Generation] = []
    for serial, e in written.items():
        rot = rotations.get(serial)
        t = _ts(e.get("ts"))
        if t is None:
            continue
        if e.get("old_serial") is None:
            trigger = "bootstrap"
        else:
            trigger = str(rot.get("trigger", "?")) if rot is not None else str(e.get("why", "?"))
        out.append(Generation(service, e.get("old_serial"), serial, e.get("generation"), t, trigger))
    for serial, e in rotations.items():  # a rotation without its identity_written line
        t = _ts(e.get("ts"))
        if serial not in written and t is not None:
            old, gen, trigger = e.get("old_serial"), e.get("generation"), str(e.get("trigger", "?"))
            out.append(Generation(service, old, serial, gen, t, trigger))
    out.sort(key=lambda g: g.written_at)
    return out


def first_presented(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """(service, serial) -> when a new connection to that service first presented that serial
    (its handshake time). Only direct connections of the load count: what clients saw."""
    seen: dict[tuple[str, str], float] = {}
    for r in records:
        if not r.get("new_conn") or not r.get("serial") or r.get("handshake_at") is None:
            continue
        key = (str(r["target"]), str(r["serial"]))
        t = float(r["handshake_at"])
        if key not in seen or t < seen[key]:
            seen[key] = t
    return seen


def presented_serials(records: Iterable[dict[str, Any]], service: str) -> list[str]:
    """Distinct serials `service` presented to the load, in order of first appearance."""
    firsts = {s: t for (svc, s), t in first_presented(records).items() if svc == service}
    return sorted(firsts, key=lambda s: firsts[s])
