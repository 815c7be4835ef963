"""Talking to a running agent: its pid file, and `zt-agent rotate` (manual rotation).

An operator "rotates the certificate manually" by sending the agent SIGUSR1; the agent renews
at once (trigger `manual` in its `rotation` log event). `zt-agent rotate --pid-file F` does it
for them, F being the file the agent wrote with `--agent-pid-file`.

Why `rotate` checks the process before signalling: SIGUSR1's default action is to terminate,
so a stale pid file whose number was reused by another program would kill that program. The
command refuses (exit 1, with the reason) unless the PID is alive and, where /proc exists, its
command line is a zt-agent's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from zt.errors import ConfigError
from zt.fsutil import PUBLIC_MODE, write_atomic

ROTATE_SIGNAL = signal.SIGUSR1
AGENT_MARKERS = (b"zt-agent", b"zt.agent")


class AgentPidFile:
    """The agent's own pid file: written at start (0644), removed at exit if still ours."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, f"{os.getpid()}\n".encode(), PUBLIC_MODE)
        except OSError as e:
            raise ConfigError(f"cannot write --agent-pid-file {self.path}: {e}") from e

    def remove(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            if int(self.path.read_text().strip()) == os.getpid():  # a successor's file stays
                self.path.unlink()


def agent_pid(pid_file: Path) -> int:
    """The PID of the running agent named by `pid_file`; ConfigError saying why when there is none."""
    try:
        text = pid_file.read_text().strip()
    except OSError as e:
        raise ConfigError(f"cannot read pid file {pid_file}: {e.strerror or e}") from e
    if not text.isdigit() or int(text) <= 1:
        raise ConfigError(f"pid file {pid_file} does not hold a PID (got {text[:32]!r})")
    pid = int(text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError as e:
        raise ConfigError(f"stale pid file {pid_file}: no process {pid} (is the agent running?)") from e
    except PermissionError:
        pass  # alive, but another user's: the signal itself will say so
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.parent.is_dir():
        try:
            argv = cmdline.read_bytes()
        except OSError as e:
            raise ConfigError(f"stale pid file {pid_file}: process {pid} is gone ({e.strerror})") from e
        if not any(m in argv for m in AGENT_MARKERS):
            shown = argv.replace(b"\0", b" ").decode(errors="replace").strip()[:80]
            raise ConfigError(f"stale pid file {pid_file}: process {pid} is not a zt-agent ({shown!r})")
    return pid


def request_rotation(pid_file: Path) -> int:
    """Send the manual-rotation signal to the agent of `pid_file`; returns its PID."""
    pid = agent_pid(pid_file)
    try:
        os.kill(pid, ROTATE_SIGNAL)
    except OSError as e:
        raise ConfigError(f"cannot signal agent {pid} from {pid_file}: {e.strerror or e}") from e
    return pid


def rotate_main(argv: Sequence[str]) -> int:
    """`zt-agent rotate --pid-file F`: 0 once the signal is sent, 1 with a message when it cannot be."""
    p = argparse.ArgumentParser(
        prog="zt-agent rotate",
        description="ask a running zt-agent to renew its certificate now (sends it SIGUSR1)",
    )
    p.add_argument("--pid-file", type=Path, required=True, help="the agent's --agent-pid-file")
    try:
        args = p.parse_args(list(argv))
    except SystemExit as e:
        return int(e.code or 0)
    try:
        pid = request_rotation(args.pid_file)
    except ConfigError as e:
        print(f"zt-agent rotate: {e}", file=sys.stderr)
        return 1
    print(f"zt-agent rotate: asked agent {pid} to renew now")
    return 0
