"""The SQLite store (zt.ra.store_api): the embedded default, one file next to the CA.

SQLite in WAL mode, one file next to the CA. Why SQLite: it survives a kill at any moment
(every change is one transaction; WAL replays or discards it whole), several worker processes
can share it (writers serialise on the database lock, readers never block), and it needs no
server. Each thread gets its own connection. Writers use BEGIN IMMEDIATE so a decision
("is this token unused?") and its effect ("mark it used, record the certificate") can never
interleave with another process's.

Schema 2 (over 1): an identity can be revoked as a whole (`identities.revoked_at`), and every
renewed certificate names the serial it replaced (`certificates.renews`), so a key-compromise
revocation reaches everything renewed from the compromised key. `check()` upgrades a schema-1
store in place (two added columns, one index) under the write lock.

Schema 3 (over 2): the rate-limit and lockout state (`_RATE_SCHEMA`, zt.ra.ratelimit), here so
every worker process and the next start of the RA see the same counts. `check()` adds the
tables to a schema-1 or -2 store.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from zt.auditlog import AuditLog, SyncResult
from zt.ca.layout import AUDIT_LOG_NAME
from zt.errors import StoreError
from zt.ra.store_api import (
    KEY_COMPROMISE,
    SCHEMA_VERSION,
    CertRecord,
    Counts,
    Identity,
    PendingAppend,
    StateStore,
    TokenRow,
)

__all__ = ["KEY_COMPROMISE", "SCHEMA_VERSION", "CertRecord", "Counts", "Identity", "Store", "TokenRow"]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS identities (
    name TEXT PRIMARY KEY, spiffe_id TEXT NOT NULL UNIQUE, created_at REAL NOT NULL,
    revoked_at REAL, revocation_reason TEXT);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY, identity TEXT NOT NULL REFERENCES identities(name),
    created_at REAL NOT NULL, expires_at REAL NOT NULL,
    used_at REAL, used_serial TEXT, used_spki TEXT);
CREATE TABLE IF NOT EXISTS certificates (
    serial TEXT PRIMARY KEY, identity TEXT NOT NULL, spiffe_id TEXT NOT NULL,
    not_before REAL NOT NULL, not_after REAL NOT NULL, issued_at REAL NOT NULL, via TEXT NOT NULL,
    spki_sha256 TEXT NOT NULL, revoked_at REAL, revocation_reason TEXT, pem TEXT NOT NULL,
    renews TEXT);
CREATE INDEX IF NOT EXISTS certificates_identity ON certificates(identity);
CREATE INDEX IF NOT EXISTS certificates_renews ON certificates(renews);
CREATE TABLE IF NOT EXISTS nonces (jti TEXT PRIMARY KEY, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, subject TEXT, outcome TEXT NOT NULL, detail TEXT);
"""

_UPGRADE_1_TO_2 = (
    "ALTER TABLE identities ADD COLUMN revoked_at REAL",
    "ALTER TABLE identities ADD COLUMN revocation_reason TEXT",
    "ALTER TABLE certificates ADD COLUMN renews TEXT",
    "CREATE INDEX IF NOT EXISTS certificates_renews ON certificates(renews)",
)

# Rate limits and lockouts (zt.ra.ratelimit). rate_hits: one row per request a limit let
# through (key "identity:<service>" or "source:<address>"), so a limit is a strict sliding
# window; the per-key index makes the count an index range scan of at most N entries.
# Old hits are not deleted per request (two statements less in every issuance transaction):
# the count only looks inside the window, and every worker purges them once a minute.
# rate_refusals: when a key's refusals were last audited (at most once per window period;
# later ones are only logged and counted). token_failures: failed token attempts per source and
# credential; nothing of the token itself.
_RATE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS rate_hits (key TEXT NOT NULL, ts REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS rate_hits_key_ts ON rate_hits(key, ts)",
    "CREATE TABLE IF NOT EXISTS rate_refusals (key TEXT PRIMARY KEY, since REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS token_failures ("
    " source TEXT NOT NULL, credential TEXT NOT NULL, failures INTEGER NOT NULL,"
    " last_failure REAL NOT NULL, locked_until REAL, forget_at REAL NOT NULL,"
    " PRIMARY KEY (source, credential))",
)


class _Connection(sqlite3.Connection):
    """A connection that remembers whether its open transaction recorded an audit row, so the
    commit knows to bring the audit log file up to date (zt.auditlog)."""

    audited = False


class Store(StateStore):
    """One SQLite database; safe to share across threads and processes.

    The audit log file is beside it (`audit.jsonl`); `audit_echo` also copies each appended
    line there (zt-ra --audit-stdout).
    """

    def __init__(self, path: Path, *, durable: bool = True, audit_echo: IO[str] | None = None) -> None:
        self.path = Path(path)
        self._durable = durable
        self._local = threading.local()
        self._audit_echo = audit_echo
        self.audit_log = AuditLog(self.path.with_name(AUDIT_LOG_NAME), echo=audit_echo)

    @property
    def location(self) -> str:
        return str(self.path)

    def sibling(self, *, durable: bool) -> Store:
        return Store(self.path, durable=durable, audit_echo=self._audit_echo)

    # -- connections -------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path, timeout=30.0, isolation_level=None, check_same_thread=False, factory=_Connection
                )
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA journal_mode=WAL")
                # FULL: a committed issuance survives power loss too; NORMAL survives a process
                # kill (WAL keeps the commit) and is faster. Both are crash-consistent.
                conn.execute(f"PRAGMA synchronous={'FULL' if self._durable else 'NORMAL'}")
                conn.execute("PRAGMA foreign_keys=ON")
                conn.execute("PRAGMA busy_timeout=30000")
            except sqlite3.Error as e:
                raise StoreError(f"cannot open store {self.path}: {e}") from e
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        fd = getattr(self._local, "lock_fd", None)
        if fd is not None:
            os.close(fd)
            self._local.lock_fd = None
        self.audit_log.close()

    def _lock_fd(self) -> int:
        fd: int | None = getattr(self._local, "lock_fd", None)
        if fd is None:
            fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._local.lock_fd = fd
        return fd

    @contextlib.contextmanager
    def _transaction(self, appends: list[PendingAppend]) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken with the database lock up front (BEGIN IMMEDIATE).

        Writers first queue on an flock(2) next to the database: the kernel wakes the next
        writer the moment the lock is free, whereas SQLite's own busy handler sleeps and
        polls (measured: ~50 ms per contended write with two RA workers).

        A transaction that recorded audit rows takes the audit log's lock after COMMIT and
        before it releases this one (zt.ra.store_api.PendingAppend): lines land in commit
        order, and `ztca audit verify` (`quiesced`) never sees a row committed but not yet
        appended. A rolled-back transaction leaves neither a row nor a line. If the append
        fails, the effect stays committed (its row too, for the next writer or `ztca audit
        repair` to append) and the caller gets a StoreError instead of an answer.
        """
        conn = self._conn()
        lock = self._lock_fd()
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise StoreError(f"store {self.path} is busy or broken: {e}") from e
            if isinstance(conn, _Connection):
                conn.audited = False
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
                if isinstance(conn, _Connection) and conn.audited:
                    conn.audited = False
                    appends.append(PendingAppend(self, self.audit_log.hold()))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def quiesced(self) -> Iterator[sqlite3.Connection]:
        """Hold the write lock shared: no writer is between its COMMIT and its audit append."""
        lock = self._lock_fd()
        fcntl.flock(lock, fcntl.LOCK_SH)
        try:
            with self.audit_log.locked():
                pass  # a writer that committed before us took it before our lock: its append is done
            yield self._conn()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self) -> sqlite3.Connection:
        return self._conn()

    # -- schema and meta ---------------------------------------------------------------------

    def create(self, meta: dict[str, str]) -> None:
        """Create the schema; the file is 0600 (it holds token hashes and the audit trail)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.fchmod(fd, 0o600)
        os.close(fd)
        with self.write() as c:
            for stmt in _SCHEMA.strip().split(";"):
                if stmt.strip():
                    c.execute(stmt)
            for stmt in _RATE_SCHEMA:
                c.execute(stmt)
            self.set_meta(c, "schema_version", str(SCHEMA_VERSION))
            for k, v in meta.items():
                self.set_meta(c, k, v)

    def check(self) -> None:
        """Fail clearly when the file is not a zt store of a version we understand."""
        if not self.path.exists():
            raise StoreError(f"no store at {self.path}; run 'ztca init' first")
        try:
            version = self.meta("schema_version")
        except sqlite3.Error as e:
            raise StoreError(f"{self.path} is not a zt store: {e}") from e
        if version in ("1", "2"):
            self._upgrade(version)
            return
        if version != str(SCHEMA_VERSION):
            raise StoreError(f"{self.path} has schema version {version}, this zt understands {SCHEMA_VERSION}")

    def _upgrade(self, seen: str) -> None:
        with self.write() as c:
            version = self.meta("schema_version", c)
            if version not in ("1", "2"):
                return  # another process upgraded it while we queued for the lock
            if version == "1":
                for stmt in _UPGRADE_1_TO_2:
                    c.execute(stmt)
            for stmt in _RATE_SCHEMA:  # 2 -> 3
                c.execute(stmt)
            self.set_meta(c, "schema_version", str(SCHEMA_VERSION))

    def sync_audit(self) -> SyncResult:
        """Bring the file up to date under the write lock: at RA start and `ztca audit repair`
        (a torn last line is set aside, rows a dead writer never appended are appended)."""
        lock = self._lock_fd()
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return self.sync_audit_locked(self._conn())
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
