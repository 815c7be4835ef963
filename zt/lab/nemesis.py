"""The nemesis: a thread that applies a chaos schedule's faults to toxiproxy and heals them.

As in Jepsen, the nemesis is a client of the system like any other, and what it did is
history: every fault applied and every heal is recorded with its wall-clock time, what
toxiproxy was asked, and (for a heal) what toxiproxy said afterwards: the proxy enabled and no
toxic left on it. A fault that was applied and never healed (the run was cut short, the heal
call failed) leaves an operation with outcome "unknown", which the checkers count as no
evidence: the run fails. Whatever happens, `stop()` tries every heal still due (and, as the
last resort, toxiproxy's /reset), so a chaos lab never outlives its faults.

A process fault (plan 6: `kill`) goes to the lab instead (`Processes`): the component is
SIGKILLed by its PID, and the heal starts it again (same port, same store or certificate
directory) and waits until it answers. Its record names the PID killed, how it died, and the
PID that answers after the heal.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from zt.errors import ZtError
from zt.lab import edges
from zt.lab.chaos_plan import PROCESS_TOXICS, Schedule, ScheduledFault
from zt.lab.history import Operation, Outcome
from zt.lab.topology import Topology
from zt.lab.toxiproxy import Stream, Toxic, Toxiproxy, ToxiproxyError

CRITERION = "chaos.faults_healed"


class Processes(Protocol):
    """What the nemesis needs of a lab for process faults (zt.lab.process_runtime)."""

    def kill_component(self, name: str) -> dict[str, Any]:
        """SIGKILL the component by PID: {killed_at (wall clock, as the signal went), killed_pid,
        exit_code, ...what the kill met}."""
        ...

    def restart_component(self, name: str) -> int:
        """Start the killed component again and wait until it answers: its new PID."""
        ...


class NoProcesses:
    """A lab without process faults: a plan with one is refused when applied, as an error."""

    def kill_component(self, name: str) -> dict[str, Any]:
        raise ToxiproxyError(f"this lab cannot kill {name!r}")

    def restart_component(self, name: str) -> int:
        raise ToxiproxyError(f"this lab cannot restart {name!r}")


@dataclass
class Applied:
    """One fault as it happened: asked, applied (or refused), healed (or not)."""

    scheduled: ScheduledFault
    proxy: str
    applied_at: float | None = None
    apply_error: str | None = None
    healed_at: float | None = None
    heal_error: str | None = None
    after_heal: dict[str, Any] = field(default_factory=dict)  # the proxy as toxiproxy reported it
    heal_started_at: float | None = None  # a restart's heal takes seconds: when it began
    process: dict[str, Any] = field(default_factory=dict)  # a kill: pid killed, its exit code

    @property
    def window(self) -> tuple[float, float] | None:
        """[applied, healed] on the wall clock, when both happened."""
        if self.applied_at is None or self.healed_at is None:
            return None
        return self.applied_at, self.healed_at

    def operation(self, load_start: float) -> Operation:
        f = self.scheduled.fault
        details: dict[str, Any] = {
            "fault": self.scheduled.id,
            "plan": self.scheduled.plan,
            "edge": f.edge,
            "proxy": self.proxy,
            "toxic": f.toxic,
            "stream": f.stream,
            "attributes": f.attributes,
            "heal": f.heal,
            "scheduled_at": load_start + self.scheduled.at,
            "scheduled_heal": load_start + self.scheduled.until,
            "applied_at": self.applied_at,
            "apply_error": self.apply_error,
            "healed_at": self.healed_at,
            "heal_error": self.heal_error,
            "heal_started_at": self.heal_started_at,
            "after_heal": self.after_heal,
            "process": self.process,
        }
        outcome: Outcome
        if self.apply_error is not None:
            outcome = "fail"
        elif self.applied_at is None or self.healed_at is None:
            outcome = "unknown"  # never applied, or applied and never healed: no verdict possible
        else:
            outcome = "ok"
        start = self.applied_at or load_start + self.scheduled.at
        return Operation(
            CRITERION, "nemesis", "fault+heal", f.edge, outcome, start, self.healed_at or time.time(), details
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def toxic_name(s: ScheduledFault) -> str:
    return f"{s.plan}-{s.index}-{s.fault.toxic}"


class Nemesis:
    """Applies `schedule` relative to `load_start` (a wall-clock time) on its own thread."""

    def __init__(
        self,
        client: Toxiproxy,
        topology: Topology,
        schedule: Schedule,
        load_start: float,
        processes: Processes | None = None,
    ) -> None:
        self.client = client
        self.processes: Processes = processes if processes is not None else NoProcesses()
        self.schedule = schedule
        self.load_start = load_start
        self.applied = [
            Applied(f, "" if f.fault.toxic in PROCESS_TOXICS else edges.edge(topology, f.fault.edge).proxy)
            for slot in schedule.slots
            for f in slot.faults
        ]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nemesis", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def _events(self) -> list[tuple[float, str, Applied]]:
        ev = [(self.load_start + a.scheduled.at, "apply", a) for a in self.applied]
        ev += [(self.load_start + a.scheduled.until, "heal", a) for a in self.applied]
        return sorted(ev, key=lambda e: (e[0], e[1] == "apply"))  # a heal before an apply at the same time

    def _run(self) -> None:
        for at, kind, a in self._events():
            if self._stop.wait(max(0.0, at - time.time())):
                return
            with self._lock:
                if kind == "apply":
                    self._apply(a)
                else:
                    self._heal(a)

    def _apply(self, a: Applied) -> None:
        f = a.scheduled.fault
        try:
            if f.toxic == "kill":
                a.process = {"component": f.edge, **self.processes.kill_component(f.edge)}
                # The window opens when the signal went, not when the runtime saw the exit.
                a.applied_at = float(a.process.get("killed_at") or time.time())
                return
            elif f.toxic == "down":
                self.client.set_enabled(a.proxy, False)
            else:
                stream: Stream = "upstream" if f.stream == "upstream" else "downstream"
                self.client.add_toxic(a.proxy, Toxic(toxic_name(a.scheduled), f.toxic, stream, 1.0, f.attributes))
            a.applied_at = time.time()
        except (ToxiproxyError, ZtError) as e:
            a.apply_error = str(e)

    def _heal(self, a: Applied) -> None:
        if a.applied_at is None or a.healed_at is not None:
            return
        a.heal_started_at = time.time()
        try:
            if a.scheduled.fault.heal == "restart":
                pid = self.processes.restart_component(a.scheduled.fault.edge)
                a.healed_at = time.time()
                a.after_heal = {"pid": pid, "alive": _alive(pid)}
                return
            if a.scheduled.fault.heal == "enable":
                self.client.set_enabled(a.proxy, True)
            else:
                self.client.remove_toxic(a.proxy, toxic_name(a.scheduled))
            a.healed_at = time.time()
            proxy = self.client.proxies().get(a.proxy, {})
            a.after_heal = {
                "enabled": proxy.get("enabled"),
                "toxics": [t.get("name") for t in proxy.get("toxics", [])],
            }
        except (ToxiproxyError, ZtError) as e:
            a.heal_error = str(e)

    def wait(self, timeout: float) -> None:
        self._thread.join(timeout)

    def stop(self) -> None:
        """Stop scheduling; heal whatever is still applied (recorded as healed late)."""
        self._stop.set()
        self._thread.join(10)
        with self._lock:
            for a in self.applied:
                self._heal(a)
        if any(a.applied_at is not None and a.healed_at is None for a in self.applied):
            with contextlib.suppress(ToxiproxyError):
                self.client.reset()

    def windows(self, plan: str) -> list[tuple[Applied, tuple[float, float] | None]]:
        return [(a, a.window) for a in self.applied if a.scheduled.plan == plan]

    def operations(self) -> list[Operation]:
        return [a.operation(self.load_start) for a in self.applied]
