"""Starting, waiting for and stopping local processes: the ground floor of the process runtime.

Every process is started in its own session (so a stop reaches its children too), with its
output going to a log file, and is stopped by PID: SIGTERM, a grace period, then SIGKILL.
Readiness is a real check (an HTTP answer, a TLS handshake) retried until a deadline, never
a sleep; a wait that gives up says what it waited for, how long, and the last error.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from zt.errors import ZtError


class WaitTimeout(ZtError):
    """A readiness wait ran out of time."""


@dataclass
class Proc:
    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes]
    _log: IO[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

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
        self._log.close()
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL at once, as a crash would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(5)
        self._log.close()

    def signal(self, sig: int) -> None:
        os.kill(self.popen.pid, sig)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def start(name: str, argv: Sequence[str], log_path: Path, *, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> Proc:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - owned by Proc, closed in stop()
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    popen = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=full_env, cwd=cwd, start_new_session=True)
    return Proc(name, list(argv), log_path, popen, log)


def start_ready(name: str, argv: Sequence[str], log_path: Path, what: str, check: Callable[[], bool], *,
                timeout: float = 30.0) -> Proc:
    """start() and wait_until(check); a process that never gets ready is stopped, not leaked."""
    proc = start(name, argv, log_path)
    try:
        wait_until(what, check, timeout=timeout, proc=proc)
    except BaseException:
        proc.stop()
        raise
    return proc


def wait_until(what: str, check: Callable[[], bool], timeout: float = 30.0, interval: float = 0.1,
               proc: Proc | None = None) -> None:
    """Retry `check` until it returns True; exceptions count as 'not yet' and are reported."""
    deadline = time.monotonic() + timeout
    last: str = "never checked"
    start_t = time.monotonic()
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            tail = proc.log_text()[-2000:]
            raise WaitTimeout(f"{proc.name} exited with {proc.popen.returncode} while waiting for {what}; "
                              f"log tail:\n{tail}")
        try:
            if check():
                return
            last = "check returned false"
        except Exception as e:  # noqa: BLE001 - any failure of a readiness probe means "not ready yet"
            last = f"{type(e).__name__}: {e}"
        time.sleep(interval)
    raise WaitTimeout(f"gave up waiting for {what} after {time.monotonic() - start_t:.1f}s; last error: {last}")
