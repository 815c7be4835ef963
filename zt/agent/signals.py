"""Telling a service that new files are there: a signal to a PID, or touching a file.

C++ service-a reloads on SIGHUP (its PID in a pid file); Java service-b watches its directory
and also reacts to a touched file. A missing or stale pid file is logged, not fatal: the
service's own periodic check picks the change up later.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from zt.errors import ConfigError
from zt.logjson import log_event

log = logging.getLogger("zt.agent")


@dataclass(frozen=True)
class Notifier:
    signal_name: str | None = None
    pid_file: Path | None = None
    touch_file: Path | None = None

    def __post_init__(self) -> None:
        if self.signal_name is not None:
            parse_signal(self.signal_name)
            if self.pid_file is None:
                raise ConfigError("--signal needs --pid-file")

    def notify(self, why: str) -> bool:
        ok = True
        if self.signal_name is not None and self.pid_file is not None:
            ok = self._signal(why) and ok
        if self.touch_file is not None:
            try:
                self.touch_file.parent.mkdir(parents=True, exist_ok=True)
                self.touch_file.touch()
                log_event(log, "notified", how="touch", file=str(self.touch_file), why=why)
            except OSError as e:
                log_event(log, "notify_failed", logging.WARNING, how="touch", reason=str(e))
                ok = False
        return ok

    def _signal(self, why: str) -> bool:
        assert self.pid_file is not None and self.signal_name is not None
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, parse_signal(self.signal_name))
        except (OSError, ValueError) as e:
            log_event(log, "notify_failed", logging.WARNING, how="signal", pid_file=str(self.pid_file), reason=str(e))
            return False
        log_event(log, "notified", how="signal", signal=self.signal_name, pid=pid, why=why)
        return True


def parse_signal(name: str) -> signal.Signals:
    key = name.upper()
    if not key.startswith("SIG"):
        key = "SIG" + key
    try:
        return signal.Signals[key]
    except KeyError as e:
        raise ConfigError(f"unknown signal {name!r} (e.g. HUP, USR1)") from e
