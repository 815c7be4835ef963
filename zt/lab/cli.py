"""`zt-lab`: the lab's main job. Bring the real system up, run the milestones' scenarios
against it, print the verdicts, and write the report.

    zt-lab run [--milestone N|all] [--runtime process|docker] [--store sqlite|postgres] [--reports DIR]
               [--seed N] [--parallel N]

`all` is every milestone the lab registers (zt.lab.milestones). A registered milestone
without a scenario module yet is still judged: its criteria are UNKNOWN, which fails the
run. Exit code 0 only when every criterion of the selected milestones passed.

`--parallel N` runs the scenario modules on N labs at once (pytest-xdist workers, one module per
worker at a time, each module on its own lab as always); the workers hand their history to one
report. It saves wall time on a machine with cores to spare; its latency and throughput figures
shared the machine, and the report says so (run kind `parallel`): compare only runs made alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import random
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from zt.lab import milestones
from zt.lab.milestones import Milestone

REPO = Path(__file__).resolve().parents[2]


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= n <= 16:
        raise argparse.ArgumentTypeError(f"must be 1 to 16, not {n}")
    return n


def build_parser(registry: Mapping[int, Milestone] = milestones.REGISTRY) -> argparse.ArgumentParser:
    known = ", ".join(f"{n} ({registry[n].title})" for n in sorted(registry))
    known += "; by name, not part of all: " + ", ".join(milestones.NAMED)
    p = argparse.ArgumentParser(prog="zt-lab", description="zt lab: run the real system and judge its milestones")
    sub = p.add_subparsers(dest="verb", required=True)
    r = sub.add_parser("run", help="start the lab, run scenarios, write reports/<run-id>/ and reports/latest")
    r.add_argument(
        "--milestone",
        default="all",
        help=(
            "a milestone the lab defines, or all of them (default: all), or several joined by commas "
            f"(all,chaos). Defined: {known}"
        ),
    )
    r.add_argument(
        "--runtime",
        default="process",
        choices=["process", "docker"],
        help="how components run: local processes, or containers (docs/containers.md)",
    )
    r.add_argument(
        "--store",
        default="sqlite",
        choices=["sqlite", "postgres"],
        help="the RA's store: the CA directory's SQLite file (one RA), or a throwaway PostgreSQL server with "
        "two RA replicas on it, agents given both (docs/scaling.md; on docker, the zt-postgres container)",
    )
    r.add_argument("--keep", action="store_true", help="keep the run's working directory (CA, keys) in .lab/")
    r.add_argument("--reports", type=Path, default=REPO / "reports", help="report root (default: reports/)")
    r.add_argument("--seed", type=int, help="seed for the scenarios' random choices")
    r.add_argument("-k", dest="keyword", help="only scenarios matching this pytest -k expression")
    r.add_argument(
        "--parallel",
        type=_positive_int,
        default=1,
        metavar="N",
        help="run scenario modules on N labs at once (default 1: one lab at a time, the only kind of run "
        "whose timings are comparable; the report says which kind it was)",
    )
    return p


def main(argv: Sequence[str] | None = None, registry: Mapping[int, Milestone] = milestones.REGISTRY) -> int:
    """`registry` is the lab's own; tests pass one of their own."""
    args = build_parser(registry).parse_args(argv)
    if importlib.util.find_spec("pytest") is None:  # the product install leaves the lab's extra out
        print("zt-lab: the lab's dependencies are not installed: pip install 'zt[lab]'", file=sys.stderr)
        return 2
    try:
        selected = milestones.select(args.milestone, registry)
    except ValueError as e:
        print(f"zt-lab: {e}", file=sys.stderr)
        return 2
    files = [str(path) for m in selected for path in m.scenario_paths(REPO)]
    for m in selected:
        found = [str(p) for p in m.scenarios if p not in m.missing_scenarios(REPO)]
        missing = [f"{p} missing: its criteria UNKNOWN" for p in m.missing_scenarios(REPO)]
        print(f"[lab] milestone {m.number}: {m.title}: {', '.join(found + missing)}", flush=True)
    if not files:  # nothing to run, no lab to start: the report says so, and the run fails
        from zt.lab import pytest_plugin

        ls = pytest_plugin.new_session(args.runtime, args.reports, args.seed, args.keep, list(sys.argv))
        doc = pytest_plugin.conclude(ls, selected, print)
        return 0 if doc["verdict"] == "pass" else 1
    import pytest

    from zt.lab.selection import Selection

    pytest_args = [
        *files,
        "-p",
        "no:cacheprovider",
        "-q",
        "-rfE",
        "--capture=no",
        f"--rootdir={REPO}",
        f"--lab-runtime={args.runtime}",
        f"--lab-reports={args.reports}",
        f"--lab-store={args.store}",
    ]
    parallel = min(args.parallel, len(files))
    if parallel > 1:
        if importlib.util.find_spec("xdist") is None:
            print("zt-lab: --parallel needs pytest-xdist: pip install 'zt[lab]'", file=sys.stderr)
            return 2
        # One run id and one seed for every worker: one report directory, reproducible choices.
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        args.seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
        pytest_args += [
            "-p",
            "xdist",
            f"-n{parallel}",
            "--dist=loadfile",
            "-v",  # workers' own output is not shown: one line per scenario as it ends is the progress
            f"--lab-run-id={stamp}-m{os.getpid()}-{args.runtime}-parallel",
            f"--lab-parallel={parallel}",
        ]
        print(f"[lab] {len(files)} scenario modules on {parallel} labs at once", flush=True)
    if args.seed is not None:
        pytest_args.append(f"--lab-seed={args.seed}")
    if args.keep:
        pytest_args.append("--lab-keep")
    if args.keyword:
        pytest_args += ["-k", args.keyword]
    return int(pytest.main(pytest_args, plugins=[Selection(selected)]))


if __name__ == "__main__":
    sys.exit(main())
