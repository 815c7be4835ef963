"""Milestone 2's figures: latency around rotations, pickup delays, the rotation table, plots.

Figures, not verdicts (zt.lab.figures): the machine is shared, so latencies are reported for
people and for `make bench` to compare between runs. The issue's target is a p99 inside
rotation windows no more than 1.1 times the steady-state p99.

- A rotation window is [written - 1 s, written + 5 s] around a generation written by the
  agent of a service a request touches (its target; for /call both services).
- Steady state is every request outside all rotation windows.
- Pickup delay: from the generation on disk (the agent's log line) to the first handshake of
  the load that presented its serial, per stack (service-a C++, service-b Java).
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zt.lab.load import request_ms
from zt.lab.rotations import Generation, first_presented

WINDOW_BEFORE_S, WINDOW_AFTER_S = 1.0, 5.0


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[k]


def group_of(r: dict[str, Any]) -> str:
    if r.get("kind") == "call":
        return f"call {r.get('target')}->{r.get('callee')}"
    return f"{r.get('kind')} {r.get('target')}"


def touched(r: dict[str, Any]) -> set[str]:
    return {str(r.get("target")), str(r.get("callee"))} if r.get("kind") == "call" else {str(r.get("target"))}


def in_window(t: float, rotations: Sequence[Generation]) -> bool:
    return any(g.written_at - WINDOW_BEFORE_S <= t <= g.written_at + WINDOW_AFTER_S for g in rotations)


def latency_around_rotations(records: list[dict[str, Any]], rotations: list[Generation]) -> dict[str, dict[str, Any]]:
    """Per request group: p50/p99 inside rotation windows, steady p50/p99, and the p99 ratio."""
    by_service: dict[str, list[Generation]] = defaultdict(list)
    for g in rotations:
        by_service[g.service].append(g)
    inside: dict[str, list[float]] = defaultdict(list)
    steady: dict[str, list[float]] = defaultdict(list)
    for r in records:
        ms = request_ms(r)
        if ms is None:
            continue
        windows = [g for s in touched(r) for g in by_service.get(s, [])]
        (inside if in_window(float(r["start"]), windows) else steady)[group_of(r)].append(ms)
    out = {}
    for group in sorted(set(inside) | set(steady)):
        p99_in, p99_steady = percentile(inside[group], 99), percentile(steady[group], 99)
        out[group] = {
            "window_requests": len(inside[group]),
            "window_p50_ms": _r(percentile(inside[group], 50)),
            "window_p99_ms": _r(p99_in),
            "steady_requests": len(steady[group]),
            "steady_p50_ms": _r(percentile(steady[group], 50)),
            "steady_p99_ms": _r(p99_steady),
            "p99_ratio": _r(p99_in / p99_steady) if p99_in is not None and p99_steady else None,
        }
    return out


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


def pickup_delays(
    records: list[dict[str, Any]], rotations: list[Generation], languages: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Per service (and its stack): the pickup delays of its rotations, in milliseconds."""
    firsts = first_presented(records)
    out: dict[str, dict[str, Any]] = {}
    for service in sorted({g.service for g in rotations} | set(languages)):
        delays = [
            (firsts[(service, g.new_serial)] - g.written_at) * 1000
            for g in rotations
            if g.service == service and (service, g.new_serial) in firsts
        ]
        out[service] = {
            "stack": languages.get(service, "?"),
            "rotations": sum(g.service == service for g in rotations),
            "picked_up": len(delays),
            "median_ms": _r(statistics.median(delays)) if delays else None,
            "max_ms": _r(max(delays)) if delays else None,
            "values_ms": [round(d, 1) for d in delays],
        }
    return out


def _clock(t: float | None) -> str:
    if t is None:
        return "never"
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%H:%M:%S.%f")[:-3]


def rotation_rows(records: list[dict[str, Any]], rotations: list[Generation]) -> list[list[Any]]:
    """service, trigger, old serial, new serial, written at, first presented at, pickup delay (ms)."""
    firsts = first_presented(records)
    rows = []
    for g in sorted(rotations, key=lambda g: g.written_at):
        seen = firsts.get((g.service, g.new_serial))
        rows.append(
            [
                g.service,
                g.trigger,
                g.old_serial,
                g.new_serial,
                _clock(g.written_at),
                _clock(seen),
                None if seen is None else round((seen - g.written_at) * 1000, 1),
            ]
        )
    return rows


ROTATION_COLUMNS = [
    "service",
    "trigger",
    "old serial",
    "new serial",
    "written at (UTC)",
    "first presented at",
    "pickup delay (ms)",
]


def plot_latency(
    path: Path, service: str, records: list[dict[str, Any]], rotations: list[Generation], t0: float
) -> Path:
    """Latency over time of every request sent to `service` (by kind), failures marked, with
    its agent's rotations as vertical lines (manual ones in orange)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4.2), dpi=100)
    colors = {"fresh": "#1565c0", "keepalive": "#2e7d32", "call": "#6a1b9a"}
    for kind, color in colors.items():
        pts = [
            (float(r["start"]) - t0, ms)
            for r in records
            if r.get("kind") == kind and r.get("target") == service and (ms := request_ms(r)) is not None
        ]
        if pts:
            label = {"call": f"/call from {service}", "keepalive": "/hello keep-alive", "fresh": "/hello new conn"}[
                kind
            ]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=4, c=color, alpha=0.5, label=label, linewidths=0)
    failed = [
        (float(r.get("start") or t0) - t0, request_ms(r) or 1.0)
        for r in records
        if r.get("target") == service and (r.get("error") is not None or r.get("status") != 200)
    ]
    if failed:
        ax.scatter([p[0] for p in failed], [p[1] for p in failed], s=30, c="#c62828", marker="x", label="failed")
    for i, g in enumerate(g for g in rotations if g.service == service):
        manual = g.trigger == "manual"
        ax.axvline(
            g.written_at - t0,
            color="#ef6c00" if manual else "#616161",
            linestyle="-" if manual else "--",
            linewidth=1.2 if manual else 0.8,
            label=("manual rotation" if manual else "scheduled rotation") if i < 2 or manual else None,
        )
    ax.set_yscale("log")
    ax.set_xlabel("seconds since the load started")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"{service}: request latency under rotation")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=False))
    ax.legend(unique.values(), unique.keys(), loc="upper right", fontsize=8, markerscale=3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
