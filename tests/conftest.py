"""Fixtures for the Python core's tests: a real CA directory, and real RA / CRL processes."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import ssl
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from zt.agent.material import Material, build_csr
from zt.agent.writer import CertDirWriter
from zt.ca.authority import Authority
from zt.ca.layout import CaPaths
from zt.cli import ztca
from zt.clock import FakeClock, utcnow
from zt.lab import postgres, process
from zt.lab.ports import free_port
from zt.pki.keys import generate_key
from zt.ra.service import RegistrationAuthority
from zt.ra.store import Store


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.out)
        return doc


def run_ztca(*argv: str) -> CliResult:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = ztca.main(list(argv))
    return CliResult(code, out.getvalue(), err.getvalue())


@dataclass
class CaDir:
    paths: CaPaths
    crl_port: int

    @property
    def dir(self) -> Path:
        return self.paths.dir

    def ztca(self, *argv: str) -> CliResult:
        verb, *rest = argv
        return run_ztca(verb, "--dir", str(self.dir), *rest)

    def admin_token(self) -> str:
        return self.paths.admin_token.read_text().strip()

    def register(self, service: str, *extra: str) -> str:
        r = self.ztca("register", service, "--json", *extra)
        assert r.code == 0, r.err
        return str(r.json()["token"])

    def issue_expired(self, service: str, out: Path) -> Material:
        """A certificate our CA issued and recorded a minute ago for 50 s: expired ten seconds ago.

        Made through the RA's service layer on a clock set back, and written in the agent's
        layout without the agent's checks (`ztca issue` and the agent refuse to write a
        certificate that has already expired; tests need one to present).
        """
        past = FakeClock(utcnow() - dt.timedelta(seconds=60))
        store = Store(self.paths.store)
        ra = RegistrationAuthority(
            store,
            Authority.load(self.paths, store.meta("trust_domain") or ""),
            self.paths,
            past,
            leaf_ttl=dt.timedelta(seconds=50),
        )
        ident = store.identity(service)
        assert ident is not None, f"{service} is not registered"
        key = generate_key()
        issued = ra.issue_direct(service, build_csr(key, ident.spiffe_id), 50, actor="test")
        chain = x509.load_pem_x509_certificates(issued.chain_pem.encode())
        bundle = tuple(x509.load_pem_x509_certificates(issued.bundle_pem.encode()))
        material = Material(key, chain[0], tuple(chain[1:]), bundle, ident.spiffe_id)
        CertDirWriter(out).write(material)
        return material


def make_ca(tmp: Path, *extra: str) -> CaDir:
    crl_port = free_port()
    d = tmp / "ca"
    r = run_ztca("init", "--dir", str(d), "--crl-url", f"http://127.0.0.1:{crl_port}/crl", *extra)
    assert r.code == 0, r.err
    return CaDir(CaPaths(d), crl_port)


@pytest.fixture
def ca(tmp_path: Path) -> CaDir:
    return make_ca(tmp_path)


@dataclass
class RaServer:
    url: str
    ca: CaDir
    proc: process.Proc

    def client(self, **kw: object) -> httpx.Client:
        ctx = ssl.create_default_context(cafile=str(self.ca.paths.bundle))
        return httpx.Client(base_url=self.url, verify=ctx, timeout=10.0, **kw)  # type: ignore[arg-type]


def start_ra(ca: CaDir, logs: Path, *extra: str, name: str = "zt-ra", port: int | None = None) -> RaServer:
    port = port or free_port()
    argv = [
        sys.executable,
        "-m",
        "zt.ra.main",
        "--ca-dir",
        str(ca.dir),
        "--listen",
        f"127.0.0.1:{port}",
        "--crl-check-interval",
        "0.5",
        *extra,
    ]
    url = f"https://127.0.0.1:{port}"
    tls = ssl.create_default_context(cafile=str(ca.paths.bundle))

    def ready() -> bool:
        return httpx.get(url + "/v1/status", verify=tls, timeout=5).status_code == 200

    proc = process.start_ready(name, argv, logs / f"{name}-{port}.log", f"{name} /v1/status on port {port}", ready)
    return RaServer(url, ca, proc)


@pytest.fixture
def ra(ca: CaDir, tmp_path: Path) -> Iterator[RaServer]:
    srv = start_ra(ca, tmp_path / "logs")
    yield srv
    srv.proc.stop()


@dataclass
class CrlServer:
    url: str
    proc: process.Proc


def start_crl(ca: CaDir, logs: Path, *extra: str) -> CrlServer:
    argv = [
        sys.executable,
        "-m",
        "zt.crl.main",
        "--ca-dir",
        str(ca.dir),
        "--listen",
        f"127.0.0.1:{ca.crl_port}",
        *extra,
    ]
    url = f"http://127.0.0.1:{ca.crl_port}"
    proc = process.start_ready(
        "zt-crl", argv, logs / "zt-crl.log", "zt-crl /healthz", lambda: httpx.get(url + "/healthz").status_code == 200
    )
    return CrlServer(url, proc)


@pytest.fixture
def crl_server(ca: CaDir, tmp_path: Path) -> Iterator[CrlServer]:
    srv = start_crl(ca, tmp_path / "logs")
    yield srv
    srv.proc.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.PostgresServer]:
    """A real PostgreSQL server for the session (zt.lab.postgres). Without one installed the
    tests that need it skip on a developer's machine and fail under CI=true: CI installs it
    (scripts/install-deps.sh), so a missing server there is a broken setup, not a reason."""
    try:
        server = postgres.start(fsync=False)
    except postgres.PostgresUnavailable as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must have PostgreSQL: {e}")
        pytest.skip(str(e))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres_server: postgres.PostgresServer) -> str:
    """The URL of a new empty database of its own for this test."""
    return postgres_server.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """Each store backend in turn: None for SQLite (the CA directory's file), or a PostgreSQL URL."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    return url
