"""Rotation evidence from both sides: what the agents wrote, and what the services presented.

The agent side: every new generation an agent wrote, from its JSON log. The agent logs a
`rotation` event per new generation after bootstrap (service, old_serial, new_serial,
generation, trigger "schedule"|"manual"); older agents log only `identity_written` (serial,
old_serial, generation, why), which is read the same way when no `rotation` event exists.
Times are the log lines' `ts` (milliseconds, UTC), i.e. just after the `current` swap.

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
    """Every generation the agent for `service` wrote, oldest first."""
    events = log_events(log_text)
    out: list[Generation] = []
    rotations = [e for e in events if e.get("event") == "rotation"]
    for e in events:
        t = _ts(e.get("ts"))
        if t is None:
            continue
        if e.get("event") == "identity_written":
            if rotations and e.get("old_serial") is not None:
                continue  # the rotation event says the same, with its trigger
            trigger = "bootstrap" if e.get("old_serial") is None else str(e.get("why", "?"))
            out.append(Generation(service, e.get("old_serial"), str(e.get("serial")), e.get("generation"), t, trigger))
        elif e.get("event") == "rotation":
            out.append(
                Generation(
                    service,
                    e.get("old_serial"),
                    str(e.get("new_serial")),
                    e.get("generation"),
                    t,
                    str(e.get("trigger", "?")),
                )
            )
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
