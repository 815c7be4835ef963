"""`open_store`: the store a `--store` value names (docs/scaling.md).

- nothing given: the SQLite file in the CA directory (`<ca>/zt.db`), the embedded default;
- `sqlite:///abs/path.db`, or a plain path: that SQLite file;
- `postgresql://...` (or `postgres://`): a PostgreSQL database shared by several RA replicas,
  in libpq's URL syntax (`postgresql:///zt?host=/run/postgresql` for a Unix socket). Its audit
  log file stays in the CA directory, as with SQLite.

psycopg is imported only for a PostgreSQL URL, so `ztca` and an SQLite RA start without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

from zt.ca.layout import CaPaths
from zt.errors import ConfigError
from zt.ra.store import Store
from zt.ra.store_api import StateStore

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
# Environment variable every command that opens the store reads when --store is not given.
ENV_STORE = "ZT_STORE"


def is_postgres(url: str | None) -> bool:
    return bool(url) and str(url).startswith(POSTGRES_SCHEMES)


def open_store(
    url: str | None, paths: CaPaths, *, durable: bool = True, audit_echo: IO[str] | None = None
) -> StateStore:
    """The store `url` names, not yet checked (call `check()` or `create()`)."""
    if not url:
        return Store(paths.store, durable=durable, audit_echo=audit_echo)
    if is_postgres(url):
        from zt.ra.store_pg import PgStore

        return PgStore(url, paths.audit_log, durable=durable, audit_echo=audit_echo)
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        if not path.startswith("/"):
            raise ConfigError(f"--store {url}: a sqlite URL takes an absolute path (sqlite:///path/store.db)")
        return Store(Path(path), durable=durable, audit_echo=audit_echo)
    if "://" in url:
        raise ConfigError(f"--store {url.split('://')[0]}://...: give a path, sqlite:///path or postgresql://...")
    return Store(Path(url), durable=durable, audit_echo=audit_echo)
