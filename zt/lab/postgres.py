"""A throwaway PostgreSQL server from Debian's `postgresql` package, for tests and the lab.

`initdb` in a fresh temporary directory, the server listening only on a Unix socket in that
directory (no TCP port: nothing else on the host can reach it, and no port can clash), trust
authentication for the one role it creates (`zt`), stopped by its PID and removed afterwards.

The server refuses to run as root, and CI runs as root: then initdb and the server run as the
`postgres` system user the Debian package creates (subprocess's `user=`, so the PID we hold
is the postmaster's itself, not a wrapper's), and the directory is handed to that user.

Clients connect with `url(dbname)`; `create_database()` gives each test its own database.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from zt.errors import ZtError

ROLE = "zt"
PORT = 5432  # only names the socket file (.s.PGSQL.5432) in the private directory
SERVER_USER = "postgres"  # the Debian package's system user, used when we are root


class PostgresUnavailable(ZtError):
    """No PostgreSQL server binaries on this host (install Debian's `postgresql`)."""


def server_bin_dir() -> Path:
    """The newest /usr/lib/postgresql/<major>/bin holding `postgres` and `initdb`."""
    found = sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if (Path(p) / "postgres").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1]
    initdb = shutil.which("initdb")
    postgres = shutil.which("postgres")
    if initdb and postgres:
        return Path(postgres).resolve().parent
    raise PostgresUnavailable(
        "no PostgreSQL server found (looked in /usr/lib/postgresql/*/bin and PATH); "
        "install the Debian package 'postgresql' (scripts/install-deps.sh does)"
    )


@dataclass(frozen=True)
class _RunAs:
    user: str | None
    uid: int
    gid: int


def _run_as() -> _RunAs:
    if os.geteuid() != 0:
        return _RunAs(None, os.geteuid(), os.getegid())
    try:
        pw = pwd.getpwnam(SERVER_USER)
    except KeyError as e:
        raise PostgresUnavailable(f"running as root and there is no '{SERVER_USER}' user to run the server") from e
    return _RunAs(SERVER_USER, pw.pw_uid, pw.pw_gid)


class PostgresServer:
    """One running server; `stop()` (or leaving `running()`) ends it and removes its files."""

    def __init__(self, base: Path, bin_dir: Path, proc: subprocess.Popen[bytes], run_as: _RunAs) -> None:
        self.base = base
        self.bin_dir = bin_dir
        self.proc = proc
        self._run_as = run_as

    @property
    def socket_dir(self) -> Path:
        return self.base

    @property
    def log_path(self) -> Path:
        return self.base / "server.log"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql:///{dbname}?host={self.socket_dir}&port={PORT}&user={ROLE}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run one statement with the server's own psql (no driver needed); its output."""
        out = subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql, self.url(dbname)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if out.returncode != 0:
            raise ZtError(f"psql {sql!r}: {out.stderr.strip()}")
        return out.stdout.strip()

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: abort transactions, close sessions), SIGKILL after 15 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        shutil.rmtree(self.base, ignore_errors=True)


def start(timeout: float = 30.0, *, fsync: bool = True) -> PostgresServer:
    """initdb in a new temporary directory and start the server on a socket in it.

    `fsync=False` is for tests only: CREATE DATABASE and the shutdown checkpoint no longer
    wait for the disk (a test database per test costs ~0.1 s instead of ~0.5 s); benchmarks
    keep the default, since the cost of a durable commit is what they measure."""
    bin_dir = server_bin_dir()
    run_as = _run_as()
    # Not under pytest's tmp_path: that is 0700 root's, and the server user must reach it.
    base = Path(tempfile.mkdtemp(prefix="zt-pg-"))
    os.chown(base, run_as.uid, run_as.gid)
    data = base / "data"
    group = run_as.gid if run_as.user else None
    init = subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(data), "-U", ROLE, "--auth=trust", "-E", "UTF8", "--no-sync"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        user=run_as.user,
        group=group,
    )
    if init.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise ZtError(f"initdb failed: {init.stderr.strip()[-2000:]}")
    log = open(base / "server.log", "wb")  # noqa: SIM115 - the server's stderr for its lifetime
    os.chown(base / "server.log", run_as.uid, run_as.gid)
    proc = subprocess.Popen(
        [
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-k",
            str(base),
            "-p",
            str(PORT),
            "-c",
            "listen_addresses=",
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=32MB",
            "-c",
            f"fsync={'on' if fsync else 'off'}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        user=run_as.user,
        group=group,
    )
    log.close()
    server = PostgresServer(base, bin_dir, proc, run_as)
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            server.stop()
            raise ZtError(f"postgres exited with {proc.returncode} at start")
        ready = subprocess.run(
            [str(bin_dir / "pg_isready"), "-h", str(base), "-p", str(PORT), "-U", ROLE, "-d", "postgres"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if ready.returncode == 0:
            return server
        last = ready.stdout.strip()
        time.sleep(0.1)
    server.stop()
    raise ZtError(f"postgres not ready after {timeout:.0f} s: {last}")


@contextlib.contextmanager
def running(*, fsync: bool = True) -> Iterator[PostgresServer]:
    server = start(fsync=fsync)
    try:
        yield server
    finally:
        server.stop()
