"""A kill's fault window opens when the signal went, not when the runtime saw the exit.

`docker kill` returns at once but the container runtime then waits for the exit (about 0.8 s on
the lab's engine): an agent that failed over to the other RA replica within that wait did so
inside the fault, and the replica-kill criterion must see it there. Here a real child process is
SIGKILLed and the runtime's answer comes half a second later, as on the container runtime.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

from zt.lab.chaos_plan import Fault, Plan, schedule
from zt.lab.nemesis import Applied, Nemesis
from zt.lab.topology import Topology
from zt.lab.toxiproxy import Toxiproxy

EXIT_WAIT_S = 0.5


class SlowToReportKill:
    """Kills a real `sleep` and, like the container runtime, waits a while before answering."""

    def __init__(self) -> None:
        self.child = subprocess.Popen(["sleep", "60"])
        self.returned_at = 0.0
        self.restarted: subprocess.Popen[bytes] | None = None

    def kill_component(self, name: str) -> dict[str, Any]:
        killed_at = time.time()
        self.child.kill()
        self.child.wait(5)
        time.sleep(EXIT_WAIT_S)
        self.returned_at = time.time()
        return {"killed_at": killed_at, "killed_pid": self.child.pid, "exit_code": self.child.returncode}

    def restart_component(self, name: str) -> int:
        self.restarted = subprocess.Popen(["sleep", "60"])
        return self.restarted.pid


def _kill_once(lab: SlowToReportKill) -> Applied:
    """One replica-kill fault, healed 0.2 s later, run by a real nemesis thread."""
    plan = Plan("replica-kill", 6, "kill one", (Fault("ra-1", "kill", 0.0, 0.2, "restart"),), recovery=0.0)
    nemesis = Nemesis(Toxiproxy("http://127.0.0.1:1"), Topology(), schedule([plan], 1, warmup=0.0), time.time(), lab)
    try:
        nemesis.start()
        nemesis.wait(10)
    finally:
        nemesis.stop()
        for p in (lab.child, lab.restarted):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(5)
    (applied,) = nemesis.applied
    return applied


def test_the_kill_window_starts_at_the_signal_not_at_the_runtimes_answer() -> None:
    lab = SlowToReportKill()
    applied = _kill_once(lab)
    assert applied.apply_error is None
    assert applied.process["killed_pid"] == lab.child.pid and applied.process["exit_code"] == -9
    assert applied.applied_at == applied.process["killed_at"]
    assert applied.applied_at is not None and applied.applied_at <= lab.returned_at - EXIT_WAIT_S + 0.05
    window = applied.window
    assert window is not None and window[0] == applied.applied_at < window[1]
    assert applied.after_heal == {"pid": lab.restarted.pid if lab.restarted else None, "alive": True}


def test_a_runtime_without_killed_at_still_opens_the_window() -> None:
    """An older Processes answer (no killed_at): the window opens when the nemesis got it."""

    class NoStamp(SlowToReportKill):
        def kill_component(self, name: str) -> dict[str, Any]:
            answer = super().kill_component(name)
            del answer["killed_at"]
            return answer

    lab = NoStamp()
    applied = _kill_once(lab)
    assert applied.applied_at is not None and applied.applied_at >= lab.returned_at
