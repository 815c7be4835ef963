"""What a scenario measures beside its verdicts: figures, tables and plots for the report.

Verdicts come from the history (zt.lab.checkers). Timings are not verdicts: this machine is
shared and noisy, so latencies, pickup delays and throughput ratios are reported as figures for
people to compare between runs, never as pass/fail. A scenario adds them through the `figures`
fixture; the report writes them into `summary.json` (for CI and run-to-run comparison) and
`report.html` (tables, and plots the scenario drew into `plots/`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Table:
    milestone: int
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    def to_json(self) -> dict[str, Any]:
        return {"milestone": self.milestone, "title": self.title, "columns": list(self.columns), "rows": self.rows}


@dataclass(frozen=True)
class Plot:
    milestone: int
    title: str
    file: str  # relative to the report directory, e.g. plots/m2-latency-service-a.png

    def to_json(self) -> dict[str, Any]:
        return {"milestone": self.milestone, "title": self.title, "file": self.file}


@dataclass
class Figures:
    """The run's figures, keyed by milestone; safe to add to from several threads."""

    report_dir: Path
    labs_at_once: int = 1  # >1: `zt-lab run --parallel N`; the figures shared the machine with other labs
    values: dict[int, dict[str, Any]] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def figure(self, milestone: int, key: str, value: Any) -> None:
        """One named figure (a number, or a JSON-able dict of them), e.g. ("pickup_ms", {...})."""
        with self._lock:
            self.values.setdefault(milestone, {})[key] = value

    def table(self, milestone: int, title: str, columns: list[str], rows: list[list[Any]]) -> None:
        with self._lock:
            self.tables.append(Table(milestone, title, tuple(columns), tuple(tuple(r) for r in rows)))

    def plot_file(self, name: str) -> Path:
        """Where a scenario saves a plot (PNG or SVG) named `name`; register it with `plot()`."""
        d = self.report_dir / "plots"
        d.mkdir(parents=True, exist_ok=True)
        return d / name

    def plot(self, milestone: int, title: str, path: Path) -> None:
        with self._lock:
            self.plots.append(Plot(milestone, title, str(path.relative_to(self.report_dir))))

    @property
    def run_kind(self) -> str:
        """Which kind of run measured these figures: only an `alone` run's timings are comparable."""
        return "alone" if self.labs_at_once <= 1 else f"parallel ({self.labs_at_once} labs at once)"

    def merge(self, doc: dict[str, Any]) -> None:
        """Add the figures of another process of the same run (a `--parallel` worker's `to_json`)."""
        with self._lock:
            for m, values in doc.get("values", {}).items():
                self.values.setdefault(int(m), {}).update(values)
            self.tables += [
                Table(t["milestone"], t["title"], tuple(t["columns"]), tuple(tuple(r) for r in t["rows"]))
                for t in doc.get("tables", [])
            ]
            self.plots += [Plot(p["milestone"], p["title"], p["file"]) for p in doc.get("plots", [])]

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "run_kind": self.run_kind,
                "labs_at_once": self.labs_at_once,
                "values": {str(m): v for m, v in sorted(self.values.items())},
                "tables": [t.to_json() for t in self.tables],
                "plots": [p.to_json() for p in self.plots],
            }
