"""The PostgreSQL store (zt.ra.store_api): several RA replicas on one database.

Why one advisory lock for every write: the RA's invariants are decisions followed by their
effects in one transaction ("is this token unused?" then "mark it used, record the
certificate"; "is this serial revoked?" then "renew it"; "take CRL number n+1"). SQLite makes
every write transaction serial (BEGIN IMMEDIATE), and the queries in zt.ra.store_api were
written for that. Here every `write()` first takes the session-level advisory lock
WRITE_LOCK, then runs its transaction at READ COMMITTED: writers of every replica queue on it
in the server, the decision reads the latest committed state, and nothing interleaves. The
lock is held past COMMIT until the audit rows are appended to the audit log file (as
SQLite's flock is), then released. A replica that dies while holding it loses its session,
and the server drops the lock with it: the next writer of any replica goes on at once.

This gives up parallel writes across replicas, on purpose: an issuance's write transaction is
a few index lookups and inserts (the signing happens before it, outside the lock), so one
lock serves far more certificates per second than the fleet asks for (docs/scaling.md has the
measured cost), and it keeps one set of queries and one proof of correctness for both stores.
SERIALIZABLE would allow parallel writers but needs every caller to retry on a serialization
failure, which a `with store.write()` block cannot do.

Reads outside a transaction (`read()`) take a pooled connection per statement, in autocommit:
each sees the latest committed state, like SQLite's reader outside a transaction.

Connections come from a psycopg_pool pool per store handle. `durable=False` sets
synchronous_commit=off on its connections: a commit is acknowledged before its WAL reaches the
disk (a server crash may lose the last commits, never corrupts), which is what SQLite's
synchronous=NORMAL trades too.

Schema: versioned migrations (`_MIGRATIONS`), applied in order under the write lock at every
start; `meta.schema_version` records the last one applied. The first is the whole schema at
zt.ra.store_api.SCHEMA_VERSION, so a new database starts there.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from zt.auditlog import AuditLog, SyncResult
from zt.errors import StoreError
from zt.ra.store_api import SCHEMA_VERSION, STATE_TABLES, Conn, PendingAppend, StateStore

# pg_advisory_lock key of the write lock: "zt" "ra" in ASCII, so it stands out in pg_locks.
WRITE_LOCK = 0x7A74_7261

_SCHEMA_3 = (
    "CREATE TABLE IF NOT EXISTS identities ("
    " name TEXT PRIMARY KEY, spiffe_id TEXT NOT NULL UNIQUE, created_at DOUBLE PRECISION NOT NULL,"
    " revoked_at DOUBLE PRECISION, revocation_reason TEXT)",
    "CREATE TABLE IF NOT EXISTS tokens ("
    " hash TEXT PRIMARY KEY, identity TEXT NOT NULL REFERENCES identities(name),"
    " created_at DOUBLE PRECISION NOT NULL, expires_at DOUBLE PRECISION NOT NULL,"
    " used_at DOUBLE PRECISION, used_serial TEXT, used_spki TEXT)",
    "CREATE TABLE IF NOT EXISTS certificates ("
    " serial TEXT PRIMARY KEY, identity TEXT NOT NULL, spiffe_id TEXT NOT NULL,"
    " not_before DOUBLE PRECISION NOT NULL, not_after DOUBLE PRECISION NOT NULL,"
    " issued_at DOUBLE PRECISION NOT NULL, via TEXT NOT NULL, spki_sha256 TEXT NOT NULL,"
    " revoked_at DOUBLE PRECISION, revocation_reason TEXT, pem TEXT NOT NULL, renews TEXT)",
    "CREATE INDEX IF NOT EXISTS certificates_identity ON certificates(identity)",
    "CREATE INDEX IF NOT EXISTS certificates_renews ON certificates(renews)",
    "CREATE TABLE IF NOT EXISTS nonces (jti TEXT PRIMARY KEY, expires_at DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit ("
    " id BIGSERIAL PRIMARY KEY, ts DOUBLE PRECISION NOT NULL, actor TEXT NOT NULL,"
    " action TEXT NOT NULL, subject TEXT, outcome TEXT NOT NULL, detail TEXT)",
    "CREATE TABLE IF NOT EXISTS rate_hits (key TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL)",
    "CREATE INDEX IF NOT EXISTS rate_hits_key_ts ON rate_hits(key, ts)",
    "CREATE TABLE IF NOT EXISTS rate_refusals (key TEXT PRIMARY KEY, since DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS token_failures ("
    " source TEXT NOT NULL, credential TEXT NOT NULL, failures INTEGER NOT NULL,"
    " last_failure DOUBLE PRECISION NOT NULL, locked_until DOUBLE PRECISION,"
    " forget_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (source, credential))",
)

# (version, statements): applied in order, each once, under the write lock. Add a migration
# here (and bump zt.ra.store_api.SCHEMA_VERSION) to change the schema; never edit one shipped.
_MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = ((SCHEMA_VERSION, _SCHEMA_3),)

_META_TABLE = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"


@functools.lru_cache(maxsize=256)
def _placeholders(sql: str) -> str:
    """The shared queries' `?` placeholders as psycopg's `%s` (no query has a literal `?` or `%`)."""
    return sql.replace("%", "%%").replace("?", "%s")


class Row:
    """A result row that answers like sqlite3.Row: `row["column"]`, `row[0]`, `dict(row)`."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: Sequence[Any], index: dict[str, int]) -> None:
        self._values = values
        self._index = index

    def __getitem__(self, key: int | str) -> Any:
        return self._values[self._index[key] if isinstance(key, str) else key]

    def keys(self) -> list[str]:
        return list(self._index)


def _row_factory(cursor: Any) -> Any:
    index = {col.name: i for i, col in enumerate(cursor.description or ())}
    return lambda values: Row(values, index)


class _Result:
    """The rows of one statement run on a pooled connection that has gone back to the pool."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Any]:
        return self._rows


class _PgConn:
    """A connection in a write transaction (or under the shared lock), speaking `?`."""

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self._raw = raw
        self.audited = False  # set by StateStore.audit; the commit appends to the audit log

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self._raw.execute(_placeholders(sql), parameters)

    def executemany(self, sql: str, parameters: Any, /) -> Any:
        cur = self._raw.cursor()
        cur.executemany(_placeholders(sql), parameters)
        return cur


class _PooledReads:
    """`read()`: each statement on a pooled autocommit connection, returned at once."""

    def __init__(self, store: PgStore) -> None:
        self._store = store

    def execute(self, sql: str, parameters: Any = (), /) -> _Result:
        with self._store._connection() as raw:
            try:
                cur = raw.execute(_placeholders(sql), parameters)
                rows = cur.fetchall() if cur.description is not None else []
            except psycopg.Error as e:
                raise StoreError(f"store {self._store.location}: {e}") from e
            return _Result(rows, cur.rowcount)

    def executemany(self, sql: str, parameters: Any, /) -> _Result:
        raise StoreError("executemany needs a write transaction")


def _redacted(url: str) -> str:
    try:
        parts = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable URL)"
    parts.pop("password", None)
    return conninfo.make_conninfo("", **{k: v for k, v in parts.items() if v is not None})


class PgStore(StateStore):
    """One PostgreSQL database, shared by every replica; `audit_path` is this host's audit log file."""

    shared_by_replicas = True

    def __init__(
        self,
        url: str,
        audit_path: Path,
        *,
        durable: bool = True,
        audit_echo: IO[str] | None = None,
        max_connections: int = 8,
    ) -> None:
        self.url = url
        self._durable = durable
        self._audit_echo = audit_echo
        self._max_connections = max_connections
        self.audit_log = AuditLog(audit_path, echo=audit_echo)
        self._pool: ConnectionPool[Any] | None = None

    @property
    def location(self) -> str:
        return _redacted(self.url)

    def sibling(self, *, durable: bool) -> PgStore:
        return PgStore(
            self.url,
            self.audit_log.path,
            durable=durable,
            audit_echo=self._audit_echo,
            max_connections=self._max_connections,
        )

    # -- connections -------------------------------------------------------------------------

    def _configure(self, raw: psycopg.Connection[Any]) -> None:
        raw.execute(f"SET synchronous_commit = {'on' if self._durable else 'off'}")
        raw.execute("SET default_transaction_isolation = 'read committed'")

    def _open_pool(self) -> ConnectionPool[Any]:
        if self._pool is None:
            self._pool = ConnectionPool(
                self.url,
                min_size=1,
                max_size=self._max_connections,
                kwargs={"autocommit": True, "row_factory": _row_factory},
                configure=self._configure,
                timeout=10.0,
                open=True,
                name="zt-store",
            )
        return self._pool

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self._open_pool().connection() as raw:
                yield raw
        except PoolTimeout as e:
            raise StoreError(f"store {self.location} is unreachable: {e}") from e
        except psycopg.OperationalError as e:
            raise StoreError(f"store {self.location} is unreachable: {e}") from e

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self.audit_log.close()

    @contextlib.contextmanager
    def _locked(self, shared: bool) -> Iterator[psycopg.Connection[Any]]:
        """Hold the write lock (exclusive, or shared) on one pooled connection's session."""
        kind = "_shared" if shared else ""
        with self._connection() as raw:
            try:
                raw.execute(f"SELECT pg_advisory_lock{kind}(%s)", (WRITE_LOCK,))
            except psycopg.Error as e:
                raise StoreError(f"store {self.location} is busy or broken: {e}") from e
            try:
                yield raw
            finally:
                try:
                    raw.execute(f"SELECT pg_advisory_unlock{kind}(%s)", (WRITE_LOCK,))
                except psycopg.Error:
                    # Never hand back a connection whose session may still hold the lock:
                    # closing it ends the session, and the server drops the lock with it.
                    raw.close()

    @contextlib.contextmanager
    def _transaction(self, appends: list[PendingAppend]) -> Iterator[Conn]:
        """One READ COMMITTED transaction under the write lock (see the module doc). If it
        recorded audit rows, this host's audit log lock is taken after COMMIT, before the
        write lock is released (zt.ra.store_api.PendingAppend)."""
        with self._locked(shared=False) as raw:
            conn = _PgConn(raw)
            try:
                with raw.transaction():
                    yield conn
            except psycopg.Error as e:
                raise StoreError(f"store {self.location}: {e}") from e
            if conn.audited:
                appends.append(PendingAppend(self, self.audit_log.hold()))

    @contextlib.contextmanager
    def quiesced(self) -> Iterator[Conn]:
        with self._locked(shared=True) as raw:
            with self.audit_log.locked():
                pass  # a writer of this host that committed before us holds it until its append is done
            yield _PgConn(raw)

    def read(self) -> Conn:
        return _PooledReads(self)

    def sync_audit(self) -> SyncResult:
        with self._locked(shared=False) as raw:
            return self.sync_audit_locked(_PgConn(raw))

    # -- schema ----------------------------------------------------------------------------------

    def create(self, meta: dict[str, str]) -> None:
        self._migrate()
        with self.write() as c:
            for k, v in meta.items():
                self.set_meta(c, k, v)

    def check(self) -> None:
        self._migrate()

    def adopt(self, source: StateStore) -> dict[str, int]:
        """Copy every row of `source` (the SQLite store being left) into this store, which must
        be empty, in one transaction; how many rows per table.

        The source is held quiesced (no writer of it can commit meanwhile): stop its RA first
        anyway, or what it issues after the copy stays behind. Audit row ids are kept, so the
        audit log file beside the CA still matches its rows (`ztca audit verify`), and the
        audit id sequence goes on after the last one.
        """
        self._migrate()
        counts: dict[str, int] = {}
        with self.write() as c:
            if self.meta("trust_domain", c) or c.execute("SELECT COUNT(*) FROM identities").fetchone()[0]:
                raise StoreError(f"{self.location} already holds a zt store; copy only into an empty database")
            with source.quiesced() as src:
                for row in src.execute("SELECT key, value FROM meta").fetchall():
                    if row["key"] != "schema_version":
                        self.set_meta(c, row["key"], row["value"])
                for table in STATE_TABLES:
                    rows = src.execute(f"SELECT * FROM {table}").fetchall()
                    counts[table] = len(rows)
                    if not rows:
                        continue
                    cols = list(rows[0].keys())
                    c.executemany(
                        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                        [tuple(r[k] for k in cols) for r in rows],
                    )
            c.execute(
                "SELECT setval(pg_get_serial_sequence('audit', 'id'),"
                " (SELECT COALESCE(MAX(id), 0) + 1 FROM audit), false)"
            )
        return counts

    def schema_version(self) -> int:
        raw = self.meta("schema_version")
        return int(raw) if raw else 0

    def _migrate(self) -> None:
        with self.write() as c:
            c.execute(_META_TABLE)
            seen = int(self.meta("schema_version", c) or 0)
            if seen > SCHEMA_VERSION:
                raise StoreError(f"{self.location} has schema version {seen}, this zt understands {SCHEMA_VERSION}")
            for version, statements in _MIGRATIONS:
                if version > seen:
                    for stmt in statements:
                        c.execute(stmt)
                    self.set_meta(c, "schema_version", str(version))
