"""The chaos run's figures: request latency over time with every fault window shaded.

Figures, not verdicts (zt.lab.figures). Each plot shows one service's requests (by kind),
failures as red crosses, and each fault as a shaded span from when the nemesis applied it to
when it healed it (the recorded times, not the scheduled ones), labelled with its edge and
toxic; the title carries the seed that replays the schedule.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zt.lab.load import request_ms
from zt.lab.nemesis import Applied

FAULT_COLORS = {
    "down": "#ef9a9a",
    "latency": "#fff59d",
    "reset_peer": "#ffcc80",
    "timeout": "#ce93d8",
    "bandwidth": "#90caf9",
    "slicer": "#a5d6a7",
}
KIND_COLORS = {"fresh": "#1565c0", "keepalive": "#2e7d32", "call": "#6a1b9a"}
KIND_LABELS = {"fresh": "/hello new conn", "keepalive": "/hello keep-alive", "call": "/call from it"}


def plot_latency_with_faults(
    path: Path, service: str, records: Sequence[dict[str, Any]], applied: Sequence[Applied], t0: float, seed: int
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4.2), dpi=100)
    for a in applied:
        if a.applied_at is None:
            continue
        end = a.healed_at if a.healed_at is not None else max((float(r.get("end") or 0) for r in records), default=t0)
        f = a.scheduled.fault
        ax.axvspan(
            a.applied_at - t0,
            end - t0,
            color=FAULT_COLORS.get(f.toxic, "#e0e0e0"),
            alpha=0.5,
            label=f"{a.scheduled.id}: {f.edge} {f.toxic}",
            linewidth=0,
        )
    for kind, color in KIND_COLORS.items():
        pts = [
            (float(r["start"]) - t0, ms)
            for r in records
            if r.get("kind") == kind and r.get("target") == service and (ms := request_ms(r)) is not None
        ]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=4, c=color, alpha=0.6, label=KIND_LABELS[kind])
    failed = [
        (float(r.get("start") or t0) - t0, request_ms(r) or 1.0)
        for r in records
        if r.get("target") == service and (r.get("error") is not None or r.get("status") != 200)
    ]
    if failed:
        ax.scatter([p[0] for p in failed], [p[1] for p in failed], s=30, c="#c62828", marker="x", label="failed")
    ax.set_yscale("log")
    ax.set_xlabel("seconds since the load started")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"{service}: latency under chaos (seed {seed}; shaded: fault windows)")
    ax.legend(loc="upper left", fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
