"""Crash-safe file writes with the final mode from the first byte.

Two properties matter for a CA and an agent: a reader never sees a half-written file (write a
temporary file in the same directory, fsync, rename over the target, fsync the directory),
and a secret is never world-readable, not even for a moment (create it with O_EXCL and mode
0600 and fchmod it, so the umask cannot widen it).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644
READ_ONLY_MODE = 0o444


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = PUBLIC_MODE) -> None:
    """Replace `path` with `data` atomically; readers see the old or the new file, whole."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        _write_new(tmp, data, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def write_new(path: Path, data: bytes, mode: int = PUBLIC_MODE) -> None:
    """Create `path`, failing if it exists: for files that must never be overwritten silently."""
    _write_new(Path(path), data, mode)


def write_secret(path: Path, data: bytes) -> None:
    """A secret (key, token, password): 0600 from creation, replaced atomically."""
    write_atomic(path, data, SECRET_MODE)
