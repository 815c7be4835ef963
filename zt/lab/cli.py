"""`zt-lab`: the lab's main job. Bring the real system up, run the milestones' scenarios
against it, print the verdicts, and write the report.

    zt-lab run [--milestone 1|all] [--runtime process] [--reports DIR] [--seed N]

Exit code 0 only when every criterion of the selected milestones passed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "scenarios"


def scenario_files(milestone: str) -> list[Path]:
    files = sorted(SCENARIOS.glob("test_m*_*.py"))
    if milestone != "all":
        files = [f for f in files if f.name.startswith(f"test_m{milestone}_")]
    return files


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zt-lab", description="zt lab: run the real system and judge its milestones")
    sub = p.add_subparsers(dest="verb", required=True)
    r = sub.add_parser("run", help="start the lab, run scenarios, write reports/<run-id>/ and reports/latest")
    r.add_argument("--milestone", default="all", help="1..5 or all (default: all)")
    r.add_argument("--runtime", default="process", choices=["process", "docker"],
                   help="how components run: local processes, or containers (docs/containers.md)")
    r.add_argument("--keep", action="store_true", help="keep the run's working directory (CA, keys) in .lab/")
    r.add_argument("--reports", type=Path, default=REPO / "reports", help="report root (default: reports/)")
    r.add_argument("--seed", type=int, help="seed for the scenarios' random choices")
    r.add_argument("-k", dest="keyword", help="only scenarios matching this pytest -k expression")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    files = scenario_files(args.milestone)
    if not files:
        print(f"zt-lab: no scenarios for milestone {args.milestone!r} in {SCENARIOS}", file=sys.stderr)
        return 2
    import pytest

    pytest_args = [*map(str, files), "-p", "no:cacheprovider", "-q", "-rfE", "--capture=no", f"--rootdir={REPO}",
                   f"--lab-runtime={args.runtime}", f"--lab-reports={args.reports}",
                   "-W", "ignore::DeprecationWarning"]
    if args.seed is not None:
        pytest_args.append(f"--lab-seed={args.seed}")
    if args.keep:
        pytest_args.append("--lab-keep")
    if args.keyword:
        pytest_args += ["-k", args.keyword]
    print(f"[lab] milestone(s) {args.milestone}: {', '.join(f.name for f in files)}", flush=True)
    return int(pytest.main(pytest_args))


if __name__ == "__main__":
    sys.exit(main())
