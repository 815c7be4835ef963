"""Catch an agent in the act of writing a generation (chaos plan 6b: kill -9 mid-write).

The agent's writer (zt.agent.writer.CertDirWriter) makes the new `gen-*` directory first,
then writes its files one by one, svid.json last, then swaps `current`. Between the mkdir and
svid.json lie the PKCS#12 encryptions and an fsync per file: tens of milliseconds. Polled every
couple of milliseconds, a directory that is not `current` and has no svid.json yet is a
generation being written, and a SIGKILL sent then lands mid-write.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

POLL_S = 0.002


def writing(out: Path, known: set[str]) -> str | None:
    """A generation directory not in `known` and not yet complete (no svid.json)."""
    try:
        names = os.listdir(out)
    except OSError:
        return None
    for n in names:
        if n.startswith("gen-") and n not in known and not os.path.exists(out / n / "svid.json"):
            return n
    return None


def wait_for_write(out: Path, timeout: float, alive: Callable[[], bool]) -> str | None:
    """Wait (at most `timeout` seconds, while the writer is `alive`) for a generation being
    written in `out`: its name, or None when none began in time."""
    known = {n for n in os.listdir(out) if n.startswith("gen-")} if out.is_dir() else set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        gen = writing(out, known)
        if gen is not None:
            return gen
        time.sleep(POLL_S)
    return None
