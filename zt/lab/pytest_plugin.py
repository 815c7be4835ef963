"""The lab as a pytest plugin: a running lab, lab identities and a history for scenarios,
and at the end of the session the checkers' verdicts and the run's report.

Fixtures (named for what a scenario needs, not how it is made):
    lab               the running system: one lab per scenario module, with the module's
                      LAB_TOPOLOGY (default: Topology()), torn down when the module is done
    history           the run's history of operations (one for the whole run)
    figures           measured figures, tables and plots for the report (zt.lab.figures)
    client_identity   client_identity("load") -> a registered identity the test can call with
    foreign_identity  foreign_identity("service-a") -> same SPIFFE ID, unrelated CA (an impostor)

Scenario modules declare `pytestmark = pytest.mark.milestone(N)`. `zt-lab run` tells the
plugin which milestones it selected (zt.lab.selection), and every criterion of each is judged,
also of a milestone that has no scenario yet; run as plain pytest, the milestones collected
are judged. A criterion with no operations is `unknown`, and the session fails.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import datetime as dt
import os
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from zt.lab import environment, milestones, report
from zt.lab.figures import Figures
from zt.lab.history import History, Operation
from zt.lab.identity import LabIdentity
from zt.lab.milestones import Milestone
from zt.lab.runtime import RunningLab, Runtime
from zt.lab.selection import SELECTED
from zt.lab.topology import Topology

REPO = Path(__file__).resolve().parents[2]


@dataclass
class LabSession:
    run_id: str
    report_dir: Path
    work_dir: Path
    runtime_name: str
    seed: int
    argv: list[str]
    history: History = field(default_factory=History)
    milestones: set[int] = field(default_factory=set)
    labs_started: int = 0
    keep: bool = False
    started: float = field(default_factory=time.time)
    logs: list[str] = field(default_factory=list)
    figures: Figures | None = None

    def __post_init__(self) -> None:
        if self.figures is None:
            self.figures = Figures(self.report_dir)


_KEY = pytest.StashKey[LabSession]()


def new_run_id(runtime: str) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-m{os.getpid()}-{runtime}"


def new_session(
    runtime: str,
    reports: Path,
    seed: int | None,
    keep: bool,
    argv: list[str],
    run_id: str | None = None,
    labs_at_once: int = 1,
) -> LabSession:
    """A run's identity and places: run id, report directory, working directory, seed.

    `run_id` is given to the workers of a `--parallel` run, so that all of them write into one
    report directory and one working directory (each lab in its module's subdirectory)."""
    run_id = run_id or new_run_id(runtime)
    return LabSession(
        run_id=run_id,
        report_dir=reports / run_id,
        work_dir=REPO / ".lab" / run_id,
        runtime_name=runtime,
        seed=seed or random.SystemRandom().randrange(2**31),
        argv=argv,
        keep=keep,
        figures=Figures(reports / run_id, labs_at_once=labs_at_once),
    )


def conclude(ls: LabSession, selected: list[Milestone], out: Callable[[str], object]) -> dict[str, Any]:
    """Judge every criterion of the selected milestones, write the report, print the verdicts."""
    verdicts = milestones.judge(selected, ls.history)
    env = environment.describe(ls.argv, ls.seed, ls.runtime_name)
    env["labs_at_once"] = ls.figures.labs_at_once if ls.figures is not None else 1
    doc = report.summary(
        ls.run_id,
        verdicts,
        ls.history,
        env,
        ls.started,
        time.time(),
        ls.logs,
        titles={m.number: m.title for m in selected},
        figures=ls.figures,
    )
    report.write(ls.report_dir, doc, ls.history)
    out("")
    for line in report.verdict_table(doc).splitlines():
        out(line)
    out(f"[lab] verdict: {doc['verdict'].upper()}; report: {ls.report_dir}/report.html")
    return doc


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("zt-lab")
    g.addoption(
        "--lab-runtime",
        default=os.environ.get("ZT_LAB_RUNTIME", "process"),
        choices=list(RUNTIMES),
        help="how the lab runs its components: process or docker (default: process) [env: ZT_LAB_RUNTIME]",
    )
    g.addoption(
        "--lab-store",
        default=os.environ.get("ZT_LAB_STORE", "sqlite"),
        choices=["sqlite", "postgres"],
        help="the RA's store for every lab: sqlite, or postgres (two RA replicas) [env: ZT_LAB_STORE]",
    )
    g.addoption(
        "--lab-keep", action="store_true", help="keep the run's working directory (CA, keys) under .lab/ after the run"
    )
    g.addoption("--lab-reports", default=str(REPO / "reports"), help="where run reports go (default: reports/)")
    g.addoption("--lab-seed", type=int, default=None, help="seed for the scenarios' random choices")
    g.addoption("--lab-run-id", default=None, help=argparse.SUPPRESS)  # set by `zt-lab run --parallel`
    g.addoption("--lab-parallel", type=int, default=1, help=argparse.SUPPRESS)  # labs at once (report label)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "milestone(n): the milestone whose exit criteria a scenario provides")
    runtime = config.getoption("--lab-runtime")
    if runtime not in RUNTIMES:  # argparse does not check a default taken from ZT_LAB_RUNTIME
        raise pytest.UsageError(f"--lab-runtime/ZT_LAB_RUNTIME must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    config.stash[_KEY] = new_session(
        runtime,
        Path(config.getoption("--lab-reports")),
        config.getoption("--lab-seed"),
        bool(config.getoption("--lab-keep")),
        list(sys.argv),
        run_id=config.getoption("--lab-run-id"),
        labs_at_once=config.getoption("--lab-parallel"),
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    session = config.stash[_KEY]
    for item in items:
        for mark in item.iter_markers("milestone"):
            session.milestones.add(int(mark.args[0]))


def pytest_runtest_logstart(nodeid: str, location: tuple[str, int | None, str]) -> None:
    if nodeid.startswith("scenarios/") or "/scenarios/" in nodeid:
        print(f"\n[lab] scenario: {nodeid.split('::')[-1]}", flush=True)


RUNTIMES = ("process", "docker")


def make_runtime(name: str) -> Runtime:
    if name == "docker":
        from zt.lab.container_runtime import ContainerRuntime

        return ContainerRuntime()
    from zt.lab.process_runtime import ProcessRuntime

    return ProcessRuntime()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def lab_session(request: pytest.FixtureRequest) -> LabSession:
    return request.config.stash[_KEY]


def module_topology(module: Any) -> Topology:
    """The topology a scenario module asks for (`LAB_TOPOLOGY = Topology(...)`), or the default."""
    topology = getattr(module, "LAB_TOPOLOGY", None)
    if topology is None:
        return Topology()
    if not isinstance(topology, Topology):
        raise pytest.UsageError(f"{module.__name__}.LAB_TOPOLOGY must be a zt.lab.topology.Topology")
    return topology


@pytest.fixture(scope="module")
def lab(lab_session: LabSession, request: pytest.FixtureRequest) -> Iterator[RunningLab]:
    """A lab of the module's own: a scenario that stops the publisher or shortens lifetimes
    cannot disturb another module's evidence. Its logs go to logs/<module>/ in the report."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    random.seed(f"{lab_session.seed}:{name}")
    signal.signal(signal.SIGTERM, _on_sigterm)  # tear down on SIGTERM as on Ctrl-C
    topology = module_topology(request.module)
    store = str(request.config.getoption("--lab-store"))
    if store == "postgres" and topology.store != store:  # a module that asks for postgres keeps it
        topology = dataclasses.replace(topology, store=store)
    work_dir = lab_session.work_dir / name
    print(f"\n[lab] run {lab_session.run_id}: starting the lab for {name} ({lab_session.runtime_name})", flush=True)
    running = make_runtime(lab_session.runtime_name).create(topology, work_dir)
    lab_session.labs_started += 1
    atexit.register(running.stop)  # last resort if teardown never runs
    try:
        running.up()
        yield running
    finally:
        try:
            lab_session.logs += [
                str(p.relative_to(lab_session.report_dir))
                for p in running.collect_logs(lab_session.report_dir / "logs" / name)
            ]
        finally:
            running.stop()
            atexit.unregister(running.stop)
            if not lab_session.keep:  # the work dir holds the run's CA and private keys
                shutil.rmtree(work_dir, ignore_errors=True)
                with contextlib.suppress(OSError):  # the run's directory, once its last lab is gone
                    lab_session.work_dir.rmdir()


@pytest.fixture(scope="session")
def history(lab_session: LabSession) -> History:
    return lab_session.history


@pytest.fixture(scope="session")
def figures(lab_session: LabSession) -> Figures:
    assert lab_session.figures is not None
    return lab_session.figures


@pytest.fixture(scope="module")
def client_identity(lab: RunningLab) -> Callable[..., LabIdentity]:
    return lab.client_identity


@pytest.fixture(scope="module")
def foreign_identity(lab: RunningLab) -> Callable[[str], LabIdentity]:
    return lab.foreign_identity


def _is_worker(config: pytest.Config) -> bool:
    """A pytest-xdist worker of `zt-lab run --parallel`: it hands its evidence to the controller."""
    return hasattr(config, "workerinput")


def worker_evidence(ls: LabSession) -> dict[str, Any]:
    """What a worker sends back: its history, figures, logs and counters (JSON-able)."""
    return {
        "operations": [dataclasses.asdict(o) for o in ls.history.operations()],
        "figures": ls.figures.to_json() if ls.figures is not None else {},
        "logs": ls.logs,
        "milestones": sorted(ls.milestones),
        "labs_started": ls.labs_started,
    }


def absorb_evidence(ls: LabSession, doc: dict[str, Any]) -> None:
    """The controller's side: one run, one history, one report, whichever worker ran a lab."""
    ls.history.extend(Operation(**o) for o in doc.get("operations", []))
    if ls.figures is not None:
        ls.figures.merge(doc.get("figures", {}))
    ls.logs += doc.get("logs", [])
    ls.milestones.update(doc.get("milestones", []))
    ls.labs_started += int(doc.get("labs_started", 0))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist: a worker finished; take its evidence (none when it crashed: then the
    criteria it would have provided have no operations and are UNKNOWN, which fails)."""
    ls = node.config.stash.get(_KEY, None)
    doc = getattr(node, "workeroutput", {}).get("zt_lab")
    if ls is not None and doc:
        absorb_evidence(ls, doc)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    ls = session.config.stash.get(_KEY, None)
    if ls is None:
        return
    if _is_worker(session.config):
        session.config.workeroutput["zt_lab"] = worker_evidence(ls)  # type: ignore[attr-defined]
        return
    selected = session.config.stash.get(SELECTED, None)
    if selected is None:  # plain pytest: judge the milestones whose scenarios ran
        if not ls.labs_started or not ls.milestones:
            return
        selected = [m for n in sorted(ls.milestones) if (m := milestones.by_number(n)) is not None]
    tr: Any = session.config.pluginmanager.get_plugin("terminalreporter")
    doc = conclude(ls, selected, tr.write_line if tr is not None else print)
    if doc["verdict"] != "pass" and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
