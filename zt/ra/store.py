"""The state store: identities, token hashes, issued certificates, revocations, CRL state.

SQLite in WAL mode, one file next to the CA. Why SQLite: it survives a kill at any moment
(every change is one transaction; WAL replays or discards it whole), several worker processes
can share it (writers serialise on the database lock, readers never block), and it needs no
server. Each thread gets its own connection. Writers use BEGIN IMMEDIATE so a decision
("is this token unused?") and its effect ("mark it used, record the certificate") can never
interleave with another process's.

Times are stored as Unix seconds (REAL); serials as lowercase hex without leading zeros.

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
from dataclasses import dataclass
from pathlib import Path

from zt.errors import StoreError

SCHEMA_VERSION = 3

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

# Revocations of serials no certificate ever had, for benchmarks and the lab (`ztca bench-crl`).
# A table of its own, created on first use: `ztca list`, the validators and every
# per-certificate query stay free of them, and a store without it simply has none.
_BENCH_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS bench_revocations ("
    " serial TEXT PRIMARY KEY, revoked_at REAL NOT NULL, expires_at REAL NOT NULL)"
)

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

# RFC 5280 5.3.1 keyCompromise, as zt.ca.crl names it: the one reason that reaches descendants.
KEY_COMPROMISE = "key-compromise"


@dataclass(frozen=True)
class Identity:
    name: str
    spiffe_id: str
    created_at: float
    revoked_at: float | None = None
    revocation_reason: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True)
class TokenRow:
    hash: str
    identity: str
    created_at: float
    expires_at: float
    used_at: float | None
    used_serial: str | None
    used_spki: str | None


@dataclass(frozen=True)
class CertRecord:
    serial: str
    identity: str
    spiffe_id: str
    not_before: float
    not_after: float
    issued_at: float
    via: str  # "token", "renew" or "admin"
    spki_sha256: str
    pem: str
    revoked_at: float | None = None
    revocation_reason: str | None = None
    renews: str | None = None  # the serial this one replaced (renewals only)

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True)
class Counts:
    identities: int
    certificates: int
    active: int
    revoked: int
    tokens_outstanding: int


class Store:
    """One SQLite database; safe to share across threads and processes."""

    def __init__(self, path: Path, *, durable: bool = True) -> None:
        self.path = Path(path)
        self._durable = durable
        self._local = threading.local()

    # -- connections -------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
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

    def _lock_fd(self) -> int:
        fd: int | None = getattr(self._local, "lock_fd", None)
        if fd is None:
            fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._local.lock_fd = fd
        return fd

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken with the database lock up front (BEGIN IMMEDIATE).

        Writers first queue on an flock(2) next to the database: the kernel wakes the next
        writer the moment the lock is free, whereas SQLite's own busy handler sleeps and
        polls (measured: ~50 ms per contended write with two RA workers).
        """
        conn = self._conn()
        lock = self._lock_fd()
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise StoreError(f"store {self.path} is busy or broken: {e}") from e
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
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
            c.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            for k, v in meta.items():
                c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (k, v))

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
            Store.set_meta(c, "schema_version", str(SCHEMA_VERSION))

    def meta(self, key: str, conn: sqlite3.Connection | None = None) -> str | None:
        row = (conn or self.read()).execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    @staticmethod
    def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- identities and tokens ---------------------------------------------------------------

    @staticmethod
    def ensure_identity(conn: sqlite3.Connection, name: str, spiffe_id: str, now: float) -> Identity:
        conn.execute(
            "INSERT OR IGNORE INTO identities (name, spiffe_id, created_at) VALUES (?, ?, ?)", (name, spiffe_id, now)
        )
        row = conn.execute("SELECT * FROM identities WHERE name=?", (name,)).fetchone()
        return Identity(**dict(row))

    def identity(self, name: str, conn: sqlite3.Connection | None = None) -> Identity | None:
        row = (conn or self.read()).execute("SELECT * FROM identities WHERE name=?", (name,)).fetchone()
        return None if row is None else Identity(**dict(row))

    def identities(self) -> list[Identity]:
        rows = self.read().execute("SELECT * FROM identities ORDER BY name").fetchall()
        return [Identity(**dict(r)) for r in rows]

    @staticmethod
    def revoke_identity(conn: sqlite3.Connection, name: str, now: float, reason: str | None) -> None:
        """Mark the identity revoked from `now` on; an earlier revocation's time and reason stay."""
        conn.execute(
            "UPDATE identities SET revoked_at=?, revocation_reason=? WHERE name=? AND revoked_at IS NULL",
            (now, reason, name),
        )

    @staticmethod
    def reenable_identity(conn: sqlite3.Connection, name: str) -> None:
        conn.execute("UPDATE identities SET revoked_at=NULL, revocation_reason=NULL WHERE name=?", (name,))

    @staticmethod
    def void_tokens(conn: sqlite3.Connection, identity: str, now: float) -> int:
        """Expire the identity's unused bootstrap tokens at `now`; return how many."""
        cur = conn.execute(
            "UPDATE tokens SET expires_at=? WHERE identity=? AND used_at IS NULL AND expires_at > ?",
            (now, identity, now),
        )
        return cur.rowcount

    @staticmethod
    def add_token(conn: sqlite3.Connection, token_hash: str, identity: str, now: float, expires_at: float) -> None:
        conn.execute(
            "INSERT INTO tokens (hash, identity, created_at, expires_at) VALUES (?, ?, ?, ?)",
            (token_hash, identity, now, expires_at),
        )

    @staticmethod
    def token(conn: sqlite3.Connection, token_hash: str) -> TokenRow | None:
        row = conn.execute("SELECT * FROM tokens WHERE hash=?", (token_hash,)).fetchone()
        return None if row is None else TokenRow(**dict(row))

    @staticmethod
    def mark_token_used(conn: sqlite3.Connection, token_hash: str, now: float, serial: str, spki: str) -> None:
        conn.execute(
            "UPDATE tokens SET used_at=?, used_serial=?, used_spki=? WHERE hash=? AND used_at IS NULL",
            (now, serial, spki, token_hash),
        )

    # -- certificates --------------------------------------------------------------------------

    @staticmethod
    def add_certificate(conn: sqlite3.Connection, rec: CertRecord) -> None:
        try:
            conn.execute(
                "INSERT INTO certificates (serial, identity, spiffe_id, not_before, not_after, issued_at, via,"
                " spki_sha256, pem, renews) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rec.serial,
                    rec.identity,
                    rec.spiffe_id,
                    rec.not_before,
                    rec.not_after,
                    rec.issued_at,
                    rec.via,
                    rec.spki_sha256,
                    rec.pem,
                    rec.renews,
                ),
            )
        except sqlite3.IntegrityError as e:
            raise StoreError(f"serial {rec.serial} already recorded") from e

    def certificate(self, serial: str, conn: sqlite3.Connection | None = None) -> CertRecord | None:
        row = (conn or self.read()).execute("SELECT * FROM certificates WHERE serial=?", (serial,)).fetchone()
        return None if row is None else CertRecord(**dict(row))

    def certificates(self, identity: str | None = None) -> list[CertRecord]:
        q = "SELECT * FROM certificates"
        args: tuple[str, ...] = ()
        if identity is not None:
            q += " WHERE identity=?"
            args = (identity,)
        rows = self.read().execute(q + " ORDER BY issued_at, serial", args).fetchall()
        return [CertRecord(**dict(r)) for r in rows]

    @staticmethod
    def revoke(conn: sqlite3.Connection, serial: str, now: float, reason: str | None) -> bool:
        """Mark one certificate revoked; False if unknown or already revoked (first reason wins)."""
        cur = conn.execute(
            "UPDATE certificates SET revoked_at=?, revocation_reason=? WHERE serial=? AND revoked_at IS NULL",
            (now, reason, serial),
        )
        return cur.rowcount == 1

    @staticmethod
    def unexpired_serials(conn: sqlite3.Connection, identity: str, spiffe_id: str, now: float) -> list[str]:
        """The identity's live certificates. Matching the SPIFFE ID too keeps records that share
        the name but are not the service's (the RA's own, `zt/ra`) out of reach."""
        rows = conn.execute(
            "SELECT serial FROM certificates WHERE identity=? AND spiffe_id=? AND not_after > ? AND revoked_at IS NULL",
            (identity, spiffe_id, now),
        ).fetchall()
        return [r["serial"] for r in rows]

    @staticmethod
    def compromised_ancestor(conn: sqlite3.Connection, serial: str, depth: int = 64) -> str | None:
        """The nearest certificate among `serial` and its last `depth` renewal ancestors that was
        revoked for key compromise, or None. Whoever held that key could have made every
        renewal after it.

        Bounded because a workload's chain grows by one at every renewal: measured on one
        core, walking a 20 000-deep chain takes ~150 ms, 64 levels well under 1 ms, and this
        runs under the write lock. The bound costs no safety: a key-compromise revocation also
        revokes every descendant in its own transaction (`live_descendants`), and a renewal
        is recorded only if its certificate is unrevoked under the same lock, so no live
        certificate can descend from a compromised one; this walk is the second line.
        """
        row = conn.execute(
            "WITH RECURSIVE chain(serial, renews, reason, depth) AS ("
            " SELECT serial, renews, revocation_reason, 0 FROM certificates WHERE serial=?"
            " UNION SELECT c.serial, c.renews, c.revocation_reason, chain.depth + 1 FROM certificates c"
            "  JOIN chain ON c.serial = chain.renews WHERE chain.depth < ?)"
            " SELECT serial FROM chain WHERE reason=? ORDER BY depth LIMIT 1",
            (serial, depth, KEY_COMPROMISE),
        ).fetchone()
        return None if row is None else str(row["serial"])

    @staticmethod
    def live_descendants(conn: sqlite3.Connection, serial: str) -> list[str]:
        """Every unrevoked certificate renewed, directly or not, from `serial`."""
        rows = conn.execute(
            "WITH RECURSIVE tree(serial) AS (SELECT ?"
            " UNION SELECT c.serial FROM certificates c JOIN tree ON c.renews = tree.serial)"
            " SELECT c.serial FROM certificates c JOIN tree USING (serial)"
            " WHERE c.serial != ? AND c.revoked_at IS NULL",
            (serial, serial),
        ).fetchall()
        return [r["serial"] for r in rows]

    @staticmethod
    def revoked_unexpired(conn: sqlite3.Connection, now: float) -> list[CertRecord]:
        """What a CRL must list: revoked certificates that have not yet expired (RFC 5280 3.3)."""
        rows = conn.execute(
            "SELECT * FROM certificates WHERE revoked_at IS NOT NULL AND not_after > ? ORDER BY revoked_at",
            (now,),
        ).fetchall()
        return [CertRecord(**dict(r)) for r in rows]

    @staticmethod
    def add_bench_revocations(conn: sqlite3.Connection, serials: list[str], now: float, expires_at: float) -> int:
        """Record revocations of never-issued serials in the caller's transaction; how many were new."""
        conn.execute(_BENCH_SCHEMA)
        before = conn.total_changes
        conn.executemany(
            "INSERT OR IGNORE INTO bench_revocations VALUES (?, ?, ?)", [(s, now, expires_at) for s in serials]
        )
        return conn.total_changes - before

    @staticmethod
    def bench_revocations(conn: sqlite3.Connection, now: float) -> list[tuple[str, float]]:
        """(serial, revoked_at) of the synthetic revocations still in force; none without the table."""
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='bench_revocations'").fetchone()
        if exists is None:
            return []
        rows = conn.execute("SELECT serial, revoked_at FROM bench_revocations WHERE expires_at > ?", (now,)).fetchall()
        return [(str(r["serial"]), float(r["revoked_at"])) for r in rows]

    # -- renewal nonces ------------------------------------------------------------------------

    @staticmethod
    def use_nonce(conn: sqlite3.Connection, jti: str, expires_at: float, now: float) -> bool:
        """Record a renewal proof's id; False if it was seen before (a replay)."""
        conn.execute("DELETE FROM nonces WHERE expires_at < ?", (now,))
        cur = conn.execute("INSERT OR IGNORE INTO nonces VALUES (?, ?)", (jti, expires_at))
        return cur.rowcount == 1

    # -- rate limits and lockouts (zt.ra.ratelimit) --------------------------------------------

    @staticmethod
    def rate_window(conn: sqlite3.Connection, key: str, since: float, limit: int) -> tuple[int, float | None]:
        """How many hits `key` has after `since`, and, when that is `limit` or more, the time of
        the hit whose expiry would let one more through (the oldest one when there are exactly
        `limit`)."""
        n = int(conn.execute("SELECT COUNT(*) FROM rate_hits WHERE key=? AND ts>?", (key, since)).fetchone()[0])
        if n < limit:
            return n, None
        row = conn.execute(
            "SELECT ts FROM rate_hits WHERE key=? AND ts>? ORDER BY ts LIMIT 1 OFFSET ?", (key, since, n - limit)
        ).fetchone()
        return n, float(row[0])

    @staticmethod
    def add_rate_hit(conn: sqlite3.Connection, key: str, now: float) -> None:
        conn.execute("INSERT INTO rate_hits (key, ts) VALUES (?, ?)", (key, now))

    @staticmethod
    def refusing_since(conn: sqlite3.Connection, key: str) -> float | None:
        row = conn.execute("SELECT since FROM rate_refusals WHERE key=?", (key,)).fetchone()
        return None if row is None else float(row[0])

    @staticmethod
    def start_refusing(conn: sqlite3.Connection, key: str, now: float, after: float) -> bool:
        """Mark `key`'s refusals as audited at `now`, unless they were at or after `after`;
        True if marked (the caller audits)."""
        cur = conn.execute(
            "INSERT INTO rate_refusals VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET since=excluded.since"
            " WHERE rate_refusals.since < ?",
            (key, now, after),
        )
        return cur.rowcount == 1

    @staticmethod
    def token_failures(conn: sqlite3.Connection, source: str, credential: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM token_failures WHERE source=? AND credential=?", (source, credential)
        ).fetchone()
        return row

    @staticmethod
    def set_token_failures(
        conn: sqlite3.Connection,
        source: str,
        credential: str,
        failures: int,
        now: float,
        locked_until: float | None,
        forget_at: float,
    ) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO token_failures VALUES (?, ?, ?, ?, ?, ?)",
            (source, credential, failures, now, locked_until, forget_at),
        )

    @staticmethod
    def clear_token_failures(conn: sqlite3.Connection, source: str, credential: str) -> None:
        conn.execute("DELETE FROM token_failures WHERE source=? AND credential=?", (source, credential))

    @staticmethod
    def purge_rate_state(conn: sqlite3.Connection, hits_before: float, now: float) -> int:
        """Forget hits older than every window, and failure counts past their forget time."""
        before = conn.total_changes
        conn.execute("DELETE FROM rate_hits WHERE ts<=?", (hits_before,))
        conn.execute("DELETE FROM rate_refusals WHERE since<=?", (hits_before,))
        conn.execute("DELETE FROM token_failures WHERE forget_at<=?", (now,))
        return conn.total_changes - before

    # -- audit ---------------------------------------------------------------------------------

    @staticmethod
    def audit(
        conn: sqlite3.Connection,
        now: float,
        actor: str,
        action: str,
        subject: str | None,
        outcome: str,
        detail: str | None = None,
    ) -> None:
        conn.execute(
            "INSERT INTO audit (ts, actor, action, subject, outcome, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (now, actor, action, subject, outcome, detail),
        )

    def audit_rows(self, limit: int = 1000) -> list[dict[str, object]]:
        rows = self.read().execute("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [dict(r) for r in rows]

    # -- counts --------------------------------------------------------------------------------

    def counts(self, now: float) -> Counts:
        c = self.read()

        def one(q: str, *args: object) -> int:
            return int(c.execute(q, args).fetchone()[0])

        return Counts(
            identities=one("SELECT COUNT(*) FROM identities"),
            certificates=one("SELECT COUNT(*) FROM certificates"),
            active=one("SELECT COUNT(*) FROM certificates WHERE revoked_at IS NULL AND not_after > ?", now),
            revoked=one("SELECT COUNT(*) FROM certificates WHERE revoked_at IS NOT NULL"),
            tokens_outstanding=one("SELECT COUNT(*) FROM tokens WHERE used_at IS NULL AND expires_at > ?", now),
        )
