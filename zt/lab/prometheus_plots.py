"""Plots for the report drawn from Prometheus range queries: what the server scraped over the
scenario's window, one line per series (e.g. handshakes per second by service and result;
seconds until expiry per service, which drops to a new height at each rotation).

Measured, never verdicts (zt.lab.figures): a plot shows a person what the checks judged.
"""

from __future__ import annotations

from collections.abc import Callable

from zt.lab.figures import Figures
from zt.lab.prometheus import Prometheus, Series


def plot_range(
    figures: Figures,
    milestone: int,
    prom: Prometheus,
    promql: str,
    window: tuple[float, float],
    *,
    step: float,
    title: str,
    ylabel: str,
    file: str,
    label: Callable[[dict[str, str]], str],
    origin: float | None = None,
) -> list[Series]:
    """Query `promql` over `window` (unix times) every `step` s, draw each series against
    seconds from `origin` (the window's start by default), save `file` under the report's
    plots and register it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start, end = window
    zero = start if origin is None else origin
    series = prom.query_range(promql, start, end, step)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for s in sorted(series, key=lambda s: label(s.labels)):
        ax.plot([t - zero for t, _ in s.points], [v for _, v in s.points], label=label(s.labels))
    ax.set_xlabel("seconds from the scenario's start")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}\n{promql}", fontsize=9)
    if series:
        ax.legend(fontsize=7)
    path = figures.plot_file(file)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    figures.plot(milestone, title, path)
    return series
