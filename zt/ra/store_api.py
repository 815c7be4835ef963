"""The RA's state store, whichever database holds it: the records, and the queries both share.

Two implementations, chosen by URL (zt.ra.store_open): SQLite (zt.ra.store, the embedded
default: one file next to the CA) and PostgreSQL (zt.ra.store_pg: several RA replicas on one
database, docs/scaling.md). Everything here is plain SQL both dialects accept (upserts are
`INSERT ... ON CONFLICT`, which SQLite has since 3.24), written with `?` placeholders; the
PostgreSQL connection translates them. So each query exists once, and a backend only brings
what really differs: how a connection is had, how a write transaction is serialised, how the
schema is created and migrated.

The write-transaction contract every backend keeps, and every caller relies on: inside
`write()`, the caller's reads and writes are serialised against every other writer (every
worker process, every replica), so a decision ("is this token unused?") and its effect ("mark
it used, record the certificate") never interleave with another's. SQLite gets that from its
database lock (BEGIN IMMEDIATE); PostgreSQL from one advisory lock taken before BEGIN.

Times are stored as Unix seconds (REAL / double precision); serials as lowercase hex without
leading zeros.
"""

from __future__ import annotations

import abc
import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from zt.auditlog import AuditHold, AuditLog, AuditRecord, SyncResult
from zt.errors import StoreError

T = TypeVar("T")

# The schema both backends are at; each brings its own migrations up to it (applied at start).
SCHEMA_VERSION = 3
# Every table of the state but `meta`, in an order that satisfies the foreign keys: what
# `ztca store-copy` copies from one store into another.
STATE_TABLES = (
    "identities",
    "tokens",
    "certificates",
    "nonces",
    "audit",
    "rate_hits",
    "rate_refusals",
    "token_failures",
)

# Revocations of serials no certificate ever had, for benchmarks and the lab (`ztca bench-crl`).
# A table of its own, created on first use: `ztca list`, the validators and every
# per-certificate query stay free of them, and a store without it simply has none.
BENCH_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS bench_revocations ("
    " serial TEXT PRIMARY KEY, revoked_at DOUBLE PRECISION NOT NULL, expires_at DOUBLE PRECISION NOT NULL)"
)


class Cursor(Protocol):
    """What the queries use of a DB-API cursor (sqlite3's, or zt.ra.store_pg's)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Conn(Protocol):
    """What the queries use of a connection: rows answer `row["column"]`, `row[0]` and `dict(row)`."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Any, /) -> Cursor: ...


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
class FailureRow:
    """A source's recent failed attempts with one credential (zt.ra.lockout): never the token."""

    failures: int
    locked_until: float | None
    forget_at: float


# The rate-limit keys of an identity's issuances and of a source's requests (zt.ra.ratelimit).
IDENTITY_KEY = "identity:"
SOURCE_KEY = "source:"


@dataclass(frozen=True)
class Window:
    """A rate limit's question at one moment: are there `limit` hits after `since`?"""

    since: float
    limit: int


@dataclass(frozen=True)
class TokenRead:
    """What a bootstrap request needs from the store before it is signed, read in one statement
    (`StateStore.token_read`): the token, its identity, the presenting source's failed attempts
    with bootstrap tokens (the lockout's state; None when not asked for or none), and the
    identity's issuance window as `StateStore.rate_window` answers it (None when not asked for,
    or when one more fits)."""

    token: TokenRow | None
    identity: Identity | None
    failures: FailureRow | None = None
    identity_blocking: float | None = None


# A rate window's blocking hit: walk `key`'s hits back from the newest and stop at the
# `limit`-th (parameters: since, limit - 1). `rate_window` runs it alone, `token_read` as a
# column; {key} is the key's SQL expression.
_BLOCKING_HIT_SQL = "SELECT h.ts FROM rate_hits h WHERE h.key = {key} AND h.ts > ? ORDER BY h.ts DESC LIMIT 1 OFFSET ?"


@functools.lru_cache(maxsize=4)
def _token_read_sql(failures: bool, window: bool) -> str:
    """The statement of `token_read`: the token by its hash and its identity, each a primary-key
    lookup in a LEFT JOIN on a one-row table (so the answer is one row whatever is missing, in
    SQLite and PostgreSQL alike); optionally the source's lockout row (another primary-key
    lookup) and the identity's window (`rate_window`'s statement, as a scalar subquery)."""
    columns = [
        "t.hash AS t_hash, t.identity AS t_identity, t.created_at AS t_created_at, t.expires_at AS t_expires_at",
        "t.used_at AS t_used_at, t.used_serial AS t_used_serial, t.used_spki AS t_used_spki",
        "i.name AS i_name, i.spiffe_id AS i_spiffe_id, i.created_at AS i_created_at, i.revoked_at AS i_revoked_at",
        "i.revocation_reason AS i_revocation_reason",
    ]
    joins = "FROM (SELECT 1 AS one) AS q LEFT JOIN tokens t ON t.hash = ? LEFT JOIN identities i ON i.name = t.identity"
    if window:  # its two parameters come first: the select list precedes FROM
        blocking = _BLOCKING_HIT_SQL.format(key=f"'{IDENTITY_KEY}' || t.identity")
        columns.append(f"({blocking}) AS w_blocking")
    if failures:
        columns.append("f.failures AS f_failures, f.locked_until AS f_locked_until, f.forget_at AS f_forget_at")
        joins += " LEFT JOIN token_failures f ON f.source = ? AND f.credential = ?"
    return f"SELECT {', '.join(columns)} {joins}"


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


class PendingAppend:
    """A committed transaction's audit rows on their way to the audit log file.

    The transaction took the audit log's lock after its COMMIT and before it released the
    write lock, then released the write lock: the next writer runs its transaction and its
    COMMIT (its own fsync) while this one appends and fsyncs the lines, and the two fsyncs
    overlap instead of following each other under the write lock. The order of lines is still
    the order of commits (a writer that committed later queues for the audit lock behind
    this one), and a line is never written before its row is durable (written after COMMIT).

    `finish` appends every committed row the file lacks (a later writer's too, if it has
    committed meanwhile: that writer then finds its lines there) and releases the lock; it is
    called once, from any thread. A writer killed in between leaves committed rows without
    lines, as before: the next append, the RA's start or `ztca audit repair` adds them.
    """

    def __init__(self, store: StateStore, hold: AuditHold) -> None:
        self._store = store
        self._hold = hold

    def finish(self) -> SyncResult:
        try:
            # Read outside any transaction (the committing connection may be in the next one).
            reads = self._store.read()
            result = self._hold.sync(lambda after: StateStore.audit_records(reads, after))
            if not result.appended:
                # Another writer appended these rows; unless the file is ahead of every row the
                # store holds: then it is another store's log, and appending here would fork it.
                top = reads.execute("SELECT MAX(id) FROM audit").fetchone()[0]
                if result.head.rid > int(top or 0):
                    raise StoreError(
                        f"audit log {self._store.audit_log.path} is ahead of the store's audit rows: it "
                        "belongs to another store (move it aside, then 'ztca audit repair')"
                    )
            return result
        finally:
            self._hold.release()


class StateStore(abc.ABC):
    """The store's interface. Its audit table feeds the hash-chained audit log file
    (`audit.jsonl`, zt.auditlog) beside the CA: every write transaction that called `audit`
    appends its rows to the file after COMMIT (`PendingAppend`: the audit log's lock is taken
    before the write lock is released), so a caller that returns from `write()` has its lines
    fsync'd, in commit order.
    """

    audit_log: AuditLog
    # True when several RA replicas, possibly on several hosts, share the store: the CRL is then
    # kept in the store as well, for every replica to copy (zt.ra.revocation.sync_crl_file).
    shared_by_replicas = False

    # -- connections (per backend) -------------------------------------------------------------

    @abc.abstractmethod
    def _transaction(self, appends: list[PendingAppend]) -> contextlib.AbstractContextManager[Conn]:
        """One write transaction under the write lock. If it committed audit rows, the audit
        log's lock is taken before the write lock is released, and put in `appends`."""

    @contextlib.contextmanager
    def write(self) -> Iterator[Conn]:
        """One write transaction, serialised against every other writer (see the module doc);
        on return its audit lines are in the file and fsync'd."""
        appends: list[PendingAppend] = []
        with self._transaction(appends) as conn:
            yield conn
        for pending in appends:
            pending.finish()

    def write_deferred(self, work: Callable[[Conn], T]) -> tuple[T, PendingAppend | None]:
        """`work` in one write transaction, committed; its audit lines not yet appended: the
        caller must `finish()` the PendingAppend (zt.ra.group_commit does so on another thread
        while it commits the next batch)."""
        appends: list[PendingAppend] = []
        with self._transaction(appends) as conn:
            value = work(conn)
        return value, (appends[0] if appends else None)

    @abc.abstractmethod
    def quiesced(self) -> contextlib.AbstractContextManager[Conn]:
        """Hold the write lock shared, and wait for appends in flight: no writer is between
        its COMMIT and its audit append."""

    @abc.abstractmethod
    def read(self) -> Conn:
        """A connection for reads outside a transaction; each statement sees committed data."""

    @abc.abstractmethod
    def close(self) -> None: ...

    @abc.abstractmethod
    def create(self, meta: dict[str, str]) -> None:
        """Create the schema (at its current version) and record `meta` (`ztca init`)."""

    @abc.abstractmethod
    def check(self) -> None:
        """Fail clearly unless this is a zt store; bring an older schema up to date (at start)."""

    @abc.abstractmethod
    def sync_audit(self) -> SyncResult:
        """Bring the audit log file up to date under the write lock: at RA start and `ztca audit
        repair` (a torn last line is set aside, rows a dead writer never appended are appended)."""

    @abc.abstractmethod
    def sibling(self, *, durable: bool) -> StateStore:
        """A second handle on the same store with another durability (the RA's per-source
        limit commits without waiting for the disk: zt.ra.app)."""

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the store is, for messages (a path, or a URL without its password)."""

    # -- schema and meta ---------------------------------------------------------------------

    def meta(self, key: str, conn: Conn | None = None) -> str | None:
        row = (conn or self.read()).execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    @staticmethod
    def set_meta(conn: Conn, key: str, value: str) -> None:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    # -- identities and tokens ---------------------------------------------------------------

    @staticmethod
    def ensure_identity(conn: Conn, name: str, spiffe_id: str, now: float) -> Identity:
        conn.execute(
            "INSERT INTO identities (name, spiffe_id, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (name, spiffe_id, now),
        )
        row = conn.execute("SELECT * FROM identities WHERE name=?", (name,)).fetchone()
        return Identity(**dict(row))

    def identity(self, name: str, conn: Conn | None = None) -> Identity | None:
        row = (conn or self.read()).execute("SELECT * FROM identities WHERE name=?", (name,)).fetchone()
        return None if row is None else Identity(**dict(row))

    def identities(self) -> list[Identity]:
        rows = self.read().execute("SELECT * FROM identities ORDER BY name").fetchall()
        return [Identity(**dict(r)) for r in rows]

    @staticmethod
    def revoke_identity(conn: Conn, name: str, now: float, reason: str | None) -> None:
        """Mark the identity revoked from `now` on; an earlier revocation's time and reason stay."""
        conn.execute(
            "UPDATE identities SET revoked_at=?, revocation_reason=? WHERE name=? AND revoked_at IS NULL",
            (now, reason, name),
        )

    @staticmethod
    def reenable_identity(conn: Conn, name: str) -> None:
        conn.execute("UPDATE identities SET revoked_at=NULL, revocation_reason=NULL WHERE name=?", (name,))

    @staticmethod
    def void_tokens(conn: Conn, identity: str, now: float) -> int:
        """Expire the identity's unused bootstrap tokens at `now`; return how many."""
        cur = conn.execute(
            "UPDATE tokens SET expires_at=? WHERE identity=? AND used_at IS NULL AND expires_at > ?",
            (now, identity, now),
        )
        return cur.rowcount

    @staticmethod
    def add_token(conn: Conn, token_hash: str, identity: str, now: float, expires_at: float) -> None:
        conn.execute(
            "INSERT INTO tokens (hash, identity, created_at, expires_at) VALUES (?, ?, ?, ?)",
            (token_hash, identity, now, expires_at),
        )

    @staticmethod
    def token_read(
        conn: Conn, token_hash: str, source: str | None = None, credential: str = "", window: Window | None = None
    ) -> TokenRead:
        """The token and its identity; with `source`, the source's failures with `credential`;
        with `window`, the identity's issuance window: one statement where there were four
        (the lockout's read, the token's, the identity's and the window's)."""
        params: list[object] = [] if window is None else [window.since, window.limit - 1]
        params.append(token_hash)
        if source is not None:
            params += [source, credential]
        row = conn.execute(_token_read_sql(source is not None, window is not None), params).fetchone()
        token = None
        if row["t_hash"] is not None:
            token = TokenRow(
                row["t_hash"],
                row["t_identity"],
                row["t_created_at"],
                row["t_expires_at"],
                row["t_used_at"],
                row["t_used_serial"],
                row["t_used_spki"],
            )
        identity = None
        if row["i_name"] is not None:
            identity = Identity(
                row["i_name"], row["i_spiffe_id"], row["i_created_at"], row["i_revoked_at"], row["i_revocation_reason"]
            )
        failures = None
        if source is not None and row["f_failures"] is not None:
            failures = FailureRow(int(row["f_failures"]), row["f_locked_until"], float(row["f_forget_at"]))
        blocking = None
        if window is not None and row["w_blocking"] is not None:
            blocking = float(row["w_blocking"])
        return TokenRead(token, identity, failures, blocking)

    @staticmethod
    def mark_token_used(conn: Conn, token_hash: str, now: float, serial: str, spki: str) -> None:
        conn.execute(
            "UPDATE tokens SET used_at=?, used_serial=?, used_spki=? WHERE hash=? AND used_at IS NULL",
            (now, serial, spki, token_hash),
        )

    # -- certificates --------------------------------------------------------------------------

    @staticmethod
    def add_certificate(conn: Conn, rec: CertRecord) -> None:
        cur = conn.execute(
            "INSERT INTO certificates (serial, identity, spiffe_id, not_before, not_after, issued_at, via,"
            " spki_sha256, pem, renews) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(serial) DO NOTHING",
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
        if cur.rowcount != 1:
            raise StoreError(f"serial {rec.serial} already recorded")

    def certificate(self, serial: str, conn: Conn | None = None) -> CertRecord | None:
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
    def revoke(conn: Conn, serial: str, now: float, reason: str | None) -> bool:
        """Mark one certificate revoked; False if unknown or already revoked (first reason wins)."""
        cur = conn.execute(
            "UPDATE certificates SET revoked_at=?, revocation_reason=? WHERE serial=? AND revoked_at IS NULL",
            (now, reason, serial),
        )
        return cur.rowcount == 1

    @staticmethod
    def unexpired_serials(conn: Conn, identity: str, spiffe_id: str, now: float) -> list[str]:
        """The identity's live certificates. Matching the SPIFFE ID too keeps records that share
        the name but are not the service's (the RA's own, `zt/ra`) out of reach."""
        rows = conn.execute(
            "SELECT serial FROM certificates WHERE identity=? AND spiffe_id=? AND not_after > ? AND revoked_at IS NULL",
            (identity, spiffe_id, now),
        ).fetchall()
        return [r["serial"] for r in rows]

    @staticmethod
    def compromised_ancestor(conn: Conn, serial: str, depth: int = 64) -> str | None:
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
    def live_descendants(conn: Conn, serial: str) -> list[str]:
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
    def revoked_unexpired(conn: Conn, now: float) -> list[CertRecord]:
        """What a CRL must list: revoked certificates that have not yet expired (RFC 5280 3.3)."""
        rows = conn.execute(
            "SELECT * FROM certificates WHERE revoked_at IS NOT NULL AND not_after > ? ORDER BY revoked_at",
            (now,),
        ).fetchall()
        return [CertRecord(**dict(r)) for r in rows]

    @staticmethod
    def add_bench_revocations(conn: Conn, serials: list[str], now: float, expires_at: float) -> int:
        """Record revocations of never-issued serials in the caller's transaction; how many were new."""
        conn.execute(BENCH_SCHEMA)
        cur = conn.executemany(
            "INSERT INTO bench_revocations VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            [(s, now, expires_at) for s in serials],
        )
        return cur.rowcount  # summed over the rows by both drivers

    @staticmethod
    def bench_revocations(conn: Conn, now: float) -> list[tuple[str, float]]:
        """(serial, revoked_at) of the synthetic revocations still in force; none without the table."""
        conn.execute(BENCH_SCHEMA)  # the caller is in a write transaction (the CRL's)
        rows = conn.execute("SELECT serial, revoked_at FROM bench_revocations WHERE expires_at > ?", (now,)).fetchall()
        return [(str(r["serial"]), float(r["revoked_at"])) for r in rows]

    # -- renewal nonces ------------------------------------------------------------------------

    @staticmethod
    def use_nonce(conn: Conn, jti: str, expires_at: float, now: float) -> bool:
        """Record a renewal proof's id; False if it was seen before (a replay)."""
        conn.execute("DELETE FROM nonces WHERE expires_at < ?", (now,))
        cur = conn.execute("INSERT INTO nonces VALUES (?, ?) ON CONFLICT DO NOTHING", (jti, expires_at))
        return cur.rowcount == 1

    # -- rate limits and lockouts (zt.ra.ratelimit) --------------------------------------------

    @staticmethod
    def rate_window(conn: Conn, key: str, since: float, limit: int) -> float | None:
        """None if `key` has fewer than `limit` (at least 1) hits after `since`; else the time of
        the hit whose expiry would let one more through: the `limit`-th newest (when there are
        more, the older ones leave the window first and change nothing).

        One statement that walks the index back from the newest hit and stops at the
        `limit`-th: it reads at most `limit` entries, however many the window holds (a COUNT(*)
        read them all, and a second statement then found the blocking one).
        """
        row = conn.execute(_BLOCKING_HIT_SQL.format(key="?"), (key, since, limit - 1)).fetchone()
        return None if row is None else float(row[0])

    @staticmethod
    def add_rate_hit(conn: Conn, key: str, now: float) -> None:
        conn.execute("INSERT INTO rate_hits (key, ts) VALUES (?, ?)", (key, now))

    @staticmethod
    def refusing_since(conn: Conn, key: str) -> float | None:
        row = conn.execute("SELECT since FROM rate_refusals WHERE key=?", (key,)).fetchone()
        return None if row is None else float(row[0])

    @staticmethod
    def start_refusing(conn: Conn, key: str, now: float, after: float) -> bool:
        """Mark `key`'s refusals as audited at `now`, unless they were at or after `after`;
        True if marked (the caller audits)."""
        cur = conn.execute(
            "INSERT INTO rate_refusals VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET since=excluded.since"
            " WHERE rate_refusals.since < ?",
            (key, now, after),
        )
        return cur.rowcount == 1

    @staticmethod
    def token_failures(conn: Conn, source: str, credential: str) -> FailureRow | None:
        row = conn.execute(
            "SELECT failures, locked_until, forget_at FROM token_failures WHERE source=? AND credential=?",
            (source, credential),
        ).fetchone()
        return None if row is None else FailureRow(int(row[0]), row[1], float(row[2]))

    @staticmethod
    def set_token_failures(
        conn: Conn,
        source: str,
        credential: str,
        failures: int,
        now: float,
        locked_until: float | None,
        forget_at: float,
    ) -> None:
        conn.execute(
            "INSERT INTO token_failures VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(source, credential) DO UPDATE SET"
            " failures=excluded.failures, last_failure=excluded.last_failure, locked_until=excluded.locked_until,"
            " forget_at=excluded.forget_at",
            (source, credential, failures, now, locked_until, forget_at),
        )

    @staticmethod
    def clear_token_failures(conn: Conn, source: str, credential: str) -> None:
        conn.execute("DELETE FROM token_failures WHERE source=? AND credential=?", (source, credential))

    @staticmethod
    def purge_rate_state(conn: Conn, hits_before: float, now: float) -> int:
        """Forget hits older than every window, and failure counts past their forget time."""
        return (
            conn.execute("DELETE FROM rate_hits WHERE ts<=?", (hits_before,)).rowcount
            + conn.execute("DELETE FROM rate_refusals WHERE since<=?", (hits_before,)).rowcount
            + conn.execute("DELETE FROM token_failures WHERE forget_at<=?", (now,)).rowcount
        )

    # -- audit ---------------------------------------------------------------------------------

    # The audit table stays: it is the transactional half of the audit trail. A row commits
    # with the effect it describes (or not at all), which a file append cannot do; the file
    # (zt.auditlog) is made from the rows after the commit, so a crash between the two loses
    # nothing, and `ztca audit verify` checks each line against its row and finds lines cut
    # from the end of the file, which no hash chain alone can see.

    @staticmethod
    def audit(
        conn: Conn,
        now: float,
        actor: str,
        action: str,
        subject: str | None,
        outcome: str,
        detail: str | None = None,
    ) -> None:
        """Record one audit row in the caller's write transaction; it reaches the audit log
        file when that transaction commits (see `write`)."""
        conn.execute(
            "INSERT INTO audit (ts, actor, action, subject, outcome, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (now, actor, action, subject, outcome, detail),
        )
        if hasattr(conn, "audited"):  # the backend's connection appends to the file after COMMIT
            setattr(conn, "audited", True)  # noqa: B010 - Conn does not declare it

    @staticmethod
    def audit_records(conn: Conn, after: int = 0) -> list[AuditRecord]:
        """Committed audit rows with an id above `after`, oldest first."""
        rows = conn.execute("SELECT * FROM audit WHERE id > ? ORDER BY id", (after,)).fetchall()
        return [
            AuditRecord(int(r["id"]), float(r["ts"]), r["actor"], r["action"], r["subject"], r["outcome"], r["detail"])
            for r in rows
        ]

    def sync_audit_locked(self, conn: Conn) -> SyncResult:
        """Append every committed row the file does not hold yet; the caller holds the write lock."""
        return self.audit_log.sync(lambda after: StateStore.audit_records(conn, after))

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
