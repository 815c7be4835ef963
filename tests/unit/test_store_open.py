"""`--store` values to stores (zt.ra.store_open): the default, SQLite paths and URLs, PostgreSQL
URLs (whose password never reaches a message), and the values refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_ztca
from zt.ca.layout import CaPaths
from zt.errors import ConfigError
from zt.ra.store import Store
from zt.ra.store_open import open_store
from zt.ra.store_pg import PgStore


def test_no_store_given_is_the_ca_directorys_sqlite_file(tmp_path: Path) -> None:
    store = open_store(None, CaPaths(tmp_path))
    assert isinstance(store, Store) and store.path == CaPaths(tmp_path).store


@pytest.mark.parametrize("value", ["{d}/other.db", "sqlite://{d}/other.db"])
def test_sqlite_path_or_url_is_that_file(tmp_path: Path, value: str) -> None:
    store = open_store(value.format(d=tmp_path), CaPaths(tmp_path / "ca"))
    assert isinstance(store, Store) and store.path == tmp_path / "other.db"


def test_postgres_url_is_a_shared_store_whose_password_stays_out_of_messages(tmp_path: Path) -> None:
    store = open_store("postgresql://ra:s3cret-pw@db.internal:5432/zt", CaPaths(tmp_path))
    assert isinstance(store, PgStore) and store.shared_by_replicas
    assert "s3cret-pw" not in store.location and "db.internal" in store.location
    assert store.audit_log.path == CaPaths(tmp_path).audit_log  # this host's audit log file


@pytest.mark.parametrize(
    ("value", "why"),
    [("sqlite://relative.db", "absolute path"), ("mysql://db/zt", "give a path, sqlite:///path or postgresql")],
)
def test_unusable_store_values_are_refused_with_a_reason(tmp_path: Path, value: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        open_store(value, CaPaths(tmp_path))


def test_ztca_refuses_an_unusable_store_with_a_message(tmp_path: Path) -> None:
    r = run_ztca("status", "--dir", str(tmp_path), "--store", "mysql://db/zt")
    assert r.code != 0
    assert "give a path, sqlite:///path or postgresql" in r.err
