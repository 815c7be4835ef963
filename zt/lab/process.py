"""Starting, waiting for and stopping local processes, and the lab's one readiness wait.

Every process is started in its own session (so a stop reaches its children too), with its
output going to a log file, and is stopped by PID: SIGTERM, a grace period, then SIGKILL.
Readiness is a real check (an HTTP answer, a TLS handshake) retried until a deadline, never
a sleep. `wait_until` is the only such loop in the lab, for processes and containers alike:
a wait that gives up, or whose process or container died meanwhile, says what it waited for,
how long, the last error, and the tail of the component's log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from zt.errors import ZtError


class WaitTimeout(ZtError):
    """A readiness wait ran out of time, or what it waited on exited first."""


class Watched(Protocol):
    """What a wait watches besides its check: a process or a container that may die."""

    name: str

    def exit_state(self) -> str | None:
        """None while it runs; else how it ended ("exited with 1", "exited (exit code 2)")."""
        ...

    def log_tail(self, n: int = 30) -> str: ...


@dataclass
class Proc:
    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def exit_state(self) -> str | None:
        return None if self.alive() else f"exited with {self.popen.returncode}"

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM, wait `grace` seconds, then SIGKILL; returns the exit code."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL at once, as a crash would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(5)

    def signal(self, sig: int) -> None:
        os.kill(self.popen.pid, sig)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])


def start(
    name: str, argv: Sequence[str], log_path: Path, *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Proc:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    # The child gets its own copy of the descriptor; ours is closed at once, so a process that
    # dies or is abandoned by a failed test leaves no open file behind in this one.
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
    return Proc(name, list(argv), log_path, popen)


def start_ready(
    name: str, argv: Sequence[str], log_path: Path, what: str, check: Callable[[], bool], *, timeout: float = 30.0
) -> Proc:
    """start() and wait_until(check); a process that never gets ready is stopped, not leaked."""
    proc = start(name, argv, log_path)
    try:
        wait_until(what, check, timeout=timeout, proc=proc)
    except BaseException:
        proc.stop()
        raise
    return proc


def wait_until(
    what: str, check: Callable[[], bool], timeout: float = 30.0, interval: float = 0.1, proc: Watched | None = None
) -> None:
    """Retry `check` until it returns True; exceptions count as 'not yet' and are reported.

    `proc` is the process or container being waited for: if it exits, the wait fails at once
    (not at the deadline), saying so. Either failure names what was awaited, for how long,
    the last error and the tail of its log.
    """
    start_t = time.monotonic()
    deadline = start_t + timeout
    last: str = "never checked"

    def failure(head: str) -> WaitTimeout:
        waited = f"{time.monotonic() - start_t:.1f}s"
        tail = f"; {proc.name} log tail:\n{proc.log_tail()}" if proc is not None else ""
        return WaitTimeout(f"{head} (waited {waited} of {timeout:g}s for {what}; last error: {last}){tail}")

    while True:
        if proc is not None and (state := proc.exit_state()) is not None:
            raise failure(f"{proc.name} {state} while waiting for {what}")
        try:
            if check():
                return
            last = "check returned false"
        except Exception as e:  # noqa: BLE001 - any failure of a readiness probe means "not ready yet"
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() >= deadline:
            raise failure(f"gave up waiting for {what}")
        time.sleep(interval)
