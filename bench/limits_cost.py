"""What the RA's rate limits and token lockout cost at its full issuance rate (issue 13;
docs/rate-limits.md "What it costs"), on the fast path: three zt-ra processes side by side, the
same code, one with every limit off and one with every limit on but never reached, and a third
between them (the per-identity limit and the lockout on, the per-source limit off: the zt-ra of
`make bench-ra`), driven by the compiled load generator of `make bench-ra` (bench/loadgen, Go).

    python -m bench.limits_cost [--rounds 3] [--requests 1000] [--clients 8,32] [--workers 2]

`bench.ra_issue --limits-cost` drives the RA from Python threads (httpx), which on this machine
cap it far below what the RA now does with group commit and the `/v1/issue` fast path
(docs/performance.md); this one measures at the rate `make bench-ra` reaches. The RAs run at
once on loopback, `--durability full`, a fresh CA each, one-time tokens registered before timing
(one new identity per request, as in an issuance storm: every request runs the per-source check,
the lockout check and the per-identity check), and rounds rotate which RA goes first, so the
machine's noise hits all alike: read the ratios of one run. Also reported: CPU milliseconds per
certificate of each RA (its processes' user + system time, from /proc), which other tenants of
the machine disturb far less than the rates.

"On but never reached": `--rate-issue 1000000/1m`, `--lockout-threshold 5`, and a per-source
window of 2 s (`1000000/2s`), which at about 300 certificates per second holds about as many
hits as the default `600/1m` holds at most (the source's count is a `COUNT(*)` over its window,
so the count each check makes is about the default's worst case; `--source-window` changes it).
Results go to reports/bench/limits-cost.{json,md}; the exit code is non-zero if a request failed
or an answer did not check out.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.vs_stepca import (
    ROOT,
    Target,
    build_loadgen,
    check_samples,
    measure,
    ratio,
    start_zt,
    summarise,
)

OFF, NO_SOURCE, ON, CONTROL = "limits off", "source off", "limits on", "off again"
SOURCE_WINDOW_S = 2  # at about 300 certificates per second: about 600 hits, the default 600/1m's most


def flags(source_window: float, control: bool) -> dict[str, tuple[str, ...]]:
    """Each RA's limit flags: every limit off; the per-identity limit and the lockout on but the
    per-source limit off (`make bench-ra`'s zt-ra); every limit on. "On" is never reached. With
    `control`, a second RA with every limit off: what differs between two identical RAs in the
    same run is what the machine and the RA's place in the rounds account for."""
    identity_on = ("--rate-issue", "1000000/1m", "--lockout-threshold", "5")
    off: tuple[str, ...] = ("--rate-issue", "0", "--rate-source", "0", "--lockout-threshold", "0")
    variants: dict[str, tuple[str, ...]] = {OFF: off, NO_SOURCE: (*identity_on, "--rate-source", "0")}
    variants[ON] = (*identity_on, "--rate-source", f"1000000/{source_window:g}s")
    return {**variants, CONTROL: off} if control else variants


def table(summary: dict[str, dict[str, dict[str, Any]]], clients: list[int]) -> str:
    """One row per variant and client count, each beside the limits off of the same run."""
    lines = [
        "| limits | clients | certs/s | off: certs/s | /off | p50 ms | off: p50 ms | p99 ms | off: p99 ms "
        "| CPU ms/cert | off: CPU ms/cert | CPU /off |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant in (v for v in summary if v != OFF):
        for c in clients:
            n, f = summary[variant][str(c)], summary[OFF][str(c)]
            lines.append(
                f"| {variant} | {c} | {n['certs_per_s']} | {f['certs_per_s']} "
                f"| {ratio(n['certs_per_s'], f['certs_per_s'])} | {n['p50_ms']} | {f['p50_ms']} | {n['p99_ms']} "
                f"| {f['p99_ms']} | {n['cpu_ms_per_cert']} | {f['cpu_ms_per_cert']} "
                f"| {ratio(n['cpu_ms_per_cert'], f['cpu_ms_per_cert'])} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per client count")
    p.add_argument("--requests", type=int, default=1000, help="requests per round")
    p.add_argument("--clients", default="8,32", help="client counts, comma-separated")
    p.add_argument("--workers", type=int, default=2, help="zt-ra worker processes")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "bench")
    p.add_argument("--tools", type=Path, default=ROOT / ".tools")
    p.add_argument(
        "--source-window", type=float, default=SOURCE_WINDOW_S, help="seconds of the per-source window when on"
    )
    p.add_argument("--control", action="store_true", help="also a second RA with the limits off (an A/A control)")
    args = p.parse_args(argv)
    limit_flags = flags(args.source_window, args.control)
    clients = [int(c) for c in args.clients.split(",")]
    loadgen = build_loadgen(args.tools)
    warm = 200
    total = warm + args.rounds * len(clients) * args.requests
    targets: dict[str, Target] = {}
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="zt-bench-limits-") as tmp:
        work = Path(tmp)
        try:
            print(f"preparing {total} one-time tokens per RA ...", flush=True)
            for name in limit_flags:
                slug = "zt-ra-" + name.replace(" ", "-")
                targets[name] = start_zt(work, slug, total, args.workers, ROOT, limit_flags[name])
            runs = measure(loadgen, targets, clients, args.rounds, args.requests, warm, work)
        finally:
            for t in targets.values():
                t.proc.stop()
            shutil.rmtree(args.out / "limits-logs", ignore_errors=True)
            shutil.copytree(work / "logs", args.out / "limits-logs", dirs_exist_ok=True)
        for name, t in targets.items():
            samples = [s for by_c in runs[name].values() for r in by_c for s in r.get("samples") or []]
            found, _ = check_samples(samples, t.root)
            problems += [f"{name}: {x}" for x in found] + ([f"{name}: no sample to check"] if not samples else [])
    summary = {s: {c: summarise(rs) for c, rs in by_c.items()} for s, by_c in runs.items()}
    md = table(summary, clients)
    title = (
        f"zt-ra ({args.workers} workers, durability full), limits off, on without the per-source limit, "
        f"and all on (never reached), "
        f"medians of {args.rounds} alternating rounds of {args.requests} requests"
    )
    verdict = "all held" if not problems else "; ".join(problems)
    print(f"\n{title}\n{md}\nchecks (SAN, chain verifies): {verdict}")
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "workers": args.workers,
        "flags": {k: list(v) for k, v in limit_flags.items()},
        "requests_per_round": args.requests,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "summary": summary,
        "problems": problems,
    }
    (args.out / "limits-cost.json").write_text(json.dumps(doc, indent=2))
    (args.out / "limits-cost.md").write_text(f"# RA rate limits: cost\n\n{doc['when']}: {title}.\n\n{md}\n")
    errors = sum(s["errors"] for by_c in summary.values() for s in by_c.values())
    return 0 if not problems and errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
