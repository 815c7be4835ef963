"""The load step: locust as a subprocess, and its per-request journal turned into history.

Locust is never imported here: importing it monkey-patches the interpreter (gevent), which
would change how the lab's own sockets, threads and subprocesses behave. The lab writes a
targets file, starts `python -m locust -f load/locustfile.py --headless ...` with a bounded
number of users, spawn rate and run time, and later reads the JSON Lines journal every locust
process wrote (load/locustfile.py: an `invoke` line before each request, a `complete` line
after it). Locust's own statistics are not evidence; the journal is.

Accounting: every invoke must have a complete. An invoke without one (a worker that died, a
request cut off at the end) becomes a request with error `no_outcome`, and a timed-out
request is a failed one: for Milestone 2 a request either succeeded or it counts against the
run.

Workers: `LoadPlan.workers > 1` runs `locust --processes N` (a master and N forked workers on
this machine). docs/load.md says how to spread workers over several machines.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zt.lab import process
from zt.lab.history import History, Operation
from zt.lab.identity import LabIdentity
from zt.lab.runtime import RunningLab

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = REPO / "load" / "locustfile.py"
NO_OUTCOME = "no_outcome"


@dataclass(frozen=True)
class LoadPlan:
    """How much load, for how long. Bounded in every dimension: users, rate, time."""

    users: int = 8
    spawn_rate: float = 4.0  # users started per second
    run_seconds: int = 120
    rate_per_user: float = 2.0  # requests per second each user aims for
    workers: int = 1  # >1: locust --processes N on this machine
    keepalive_seconds: float = 30.0  # life of a keep-alive connection (spread +-25%)
    timeout: float = 10.0  # per-request socket timeout: a request longer than this failed
    stop_timeout: int = 20  # at the end, users finish the request in flight (> timeout)


def targets(lab: RunningLab) -> dict[str, Any]:
    """What the locustfile reaches: each service's URL from here, its URL from the other
    services (for /call), its SPIFFE ID; and the /call pairs (each service calls the other)."""
    names = [s.name for s in lab.topology.services]
    return {
        "services": {
            n: {
                "url": lab.service_url(n),
                "mesh_url": lab.service_url(n, from_service=True),
                "spiffe_id": lab.topology.spiffe_id(n),
            }
            for n in names
        },
        "calls": [[a, b] for a in names for b in names if a != b],
    }


def locust_argv(plan: LoadPlan, targets_file: Path, identity: LabIdentity, bundle: Path, out: Path) -> list[str]:
    gen = identity.generation()  # one generation: key and chain belong together
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--users",
        str(plan.users),
        "--spawn-rate",
        str(plan.spawn_rate),
        "--run-time",
        f"{plan.run_seconds}s",
        "--stop-timeout",
        f"{int(plan.stop_timeout)}s",
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--zt-targets",
        str(targets_file),
        "--zt-cert",
        str(gen / "chain.pem"),
        "--zt-key",
        str(gen / "key.pem"),
        "--zt-bundle",
        str(bundle),
        "--zt-out",
        str(out),
        "--zt-timeout",
        str(plan.timeout),
        "--zt-rate",
        str(plan.rate_per_user),
        "--zt-keepalive-seconds",
        str(plan.keepalive_seconds),
    ]
    if plan.workers > 1:
        argv += ["--processes", str(plan.workers)]
    return argv


class LoadRun:
    """One locust run: started in the background, so a scenario can act while it runs."""

    def __init__(
        self, lab: RunningLab, identity: LabIdentity, plan: LoadPlan, work: Path, log: Path | None = None
    ) -> None:
        self.plan = plan
        self.out = work / "requests"
        self.out.mkdir(parents=True, exist_ok=True)
        targets_file = work / "targets.json"
        targets_file.write_text(json.dumps(targets(lab), indent=2))
        self.argv = locust_argv(plan, targets_file, identity, lab.bundle(), self.out)
        self.log = log or work / "locust.log"
        self.proc: process.Proc | None = None

    def start(self) -> None:
        self.proc = process.start("locust", self.argv, self.log, cwd=REPO)

    def wait(self) -> int | None:
        """Wait for locust to end (run time, stop timeout and a margin); stop it if it does not."""
        assert self.proc is not None
        limit = self.plan.run_seconds + self.plan.stop_timeout + 60
        try:
            return self.proc.popen.wait(limit)
        except Exception:  # noqa: BLE001 - a hung load generator is stopped; its journal still counts
            return self.proc.stop()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def records(self) -> list[dict[str, Any]]:
        return read_journal(self.out)


def read_journal(out: Path) -> list[dict[str, Any]]:
    """Every request in every requests-*.jsonl under `out`: the complete line of each invoke,
    or, for an invoke that never completed, a record with error `no_outcome`. A line that does
    not parse (a process killed mid-write) is skipped; its request shows as no_outcome."""
    invokes: dict[str, dict[str, Any]] = {}
    completes: dict[str, dict[str, Any]] = {}
    for f in sorted(out.glob("requests-*.jsonl")):
        for line in f.read_text(errors="replace").splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if not isinstance(doc, dict) or "id" not in doc:
                continue
            (invokes if doc.get("ev") == "invoke" else completes)[str(doc["id"])] = doc
    records = []
    for rid, inv in invokes.items():
        done = completes.get(rid)
        if done is None:
            done = {
                "id": rid,
                "kind": inv.get("kind"),
                "target": inv.get("target"),
                "path": inv.get("path"),
                "start": inv.get("t"),
                "end": None,
                "status": None,
                "error": NO_OUTCOME,
                "detail": "an invoke line without a complete line: the request never reported an outcome",
            }
        records.append(done)
    for rid, done in completes.items():  # a complete without an invoke: recorded, never dropped
        if rid not in invokes:
            records.append({**done, "orphan": True})
    records.sort(key=lambda r: float(r.get("start") or 0.0))
    return records


def request_ms(r: dict[str, Any]) -> float | None:
    """A load record's latency in milliseconds (end - start), or None when it has no end."""
    if r.get("start") is None or r.get("end") is None:
        return None
    return (float(r["end"]) - float(r["start"])) * 1000


def request_succeeded(r: dict[str, Any]) -> bool:
    """200, no error, and for /call the upstream answered 200 too."""
    if r.get("error") is not None or r.get("status") != 200:
        return False
    return r.get("kind") != "call" or (r.get("hops") or {}).get("upstream_status") == 200


def to_operations(records: Iterable[dict[str, Any]], criterion: str, end_fallback: float) -> list[Operation]:
    """One operation per request. A request without an outcome gets outcome "fail" (never
    "unknown"): for this milestone an unanswered or timed-out request is a failed request."""
    ops = []
    for r in records:
        start = float(r.get("start") or end_fallback)
        end = float(r.get("end") or end_fallback)
        op = "call" if r.get("kind") == "call" else "hello"
        target = str(r.get("target"))
        if r.get("kind") == "call":
            target = f"{r.get('target')}->{r.get('callee')}"
        ops.append(
            Operation(
                criterion,
                f"locust:{r.get('kind')}",
                op,
                target,
                "ok" if request_succeeded(r) else "fail",
                start,
                end,
                r,
            )
        )
    return ops


def record_requests(history: History, records: list[dict[str, Any]], criterion: str, end_fallback: float) -> None:
    history.extend(to_operations(records, criterion, end_fallback))
