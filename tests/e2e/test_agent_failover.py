"""A real zt-agent given two RA replicas (`--ra A --ra B`, real zt-ra processes on one real
PostgreSQL database): when the replica it uses dies (kill -9: connection refused) or cannot
reach its store (HTTP 503), it renews through the other and logs which one answered."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CaDir, RaServer, make_ca, start_ra
from tests.e2e.test_agent import agent_argv, serial, token_file
from tests.e2e.test_agent_rotation import log_events
from tests.e2e.test_store_postgres import start_replicas
from zt.lab import postgres, process
from zt.ra.store_open import ENV_STORE


@pytest.fixture
def pg_ca(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> CaDir:
    monkeypatch.setenv(ENV_STORE, pg_url)
    return make_ca(tmp_path, "--store", pg_url)


def start_agent(ras: list[RaServer], ca: CaDir, tmp_path: Path) -> tuple[process.Proc, Path]:
    out = tmp_path / "out"
    argv = agent_argv(ras[0], "a", out, token_file(ca, "a", tmp_path), "--ttl", "600", "--ra", ras[1].url)
    agent = process.start("agent", argv, tmp_path / "agent.log")
    process.wait_until("first identity", lambda: (out / "svid.json").exists(), proc=agent)
    return agent, out


def rotate_and_wait(agent: process.Proc, out: Path, rotations: int) -> dict[str, object]:
    before = serial(out)
    agent.signal(signal.SIGUSR1)
    process.wait_until(f"rotation {rotations}", lambda: len(log_events(agent, "rotation")) >= rotations, proc=agent)
    assert serial(out) != before
    return log_events(agent, "rotation")[-1]


@pytest.fixture
def two_replicas(pg_ca: CaDir, pg_url: str, tmp_path: Path) -> Iterator[list[RaServer]]:
    ras = start_replicas(pg_ca, pg_url, tmp_path / "logs")
    yield ras
    for ra in ras:
        ra.proc.stop()


def test_agent_renews_through_the_other_replica_when_its_replica_is_killed(
    pg_ca: CaDir, two_replicas: list[RaServer], tmp_path: Path
) -> None:
    a, b = two_replicas
    agent, out = start_agent(two_replicas, pg_ca, tmp_path)
    try:
        written = [e for e in log_events(agent, "identity_written") if e["why"] == "bootstrap"]
        assert [e["ra"] for e in written] == [a.url]
        assert rotate_and_wait(agent, out, 1)["ra"] == a.url
        a.proc.kill()
        assert rotate_and_wait(agent, out, 2)["ra"] == b.url
        failovers = log_events(agent, "ra_failover")
        assert [(e["ra"], e["next_ra"]) for e in failovers] == [(a.url, b.url)], failovers
        # Sticky: the next renewal goes straight to b, with no new failover.
        assert rotate_and_wait(agent, out, 3)["ra"] == b.url
        assert len(log_events(agent, "ra_failover")) == 1
    finally:
        agent.stop()


def test_agent_bootstraps_through_the_second_replica_when_the_first_is_down(
    pg_ca: CaDir, two_replicas: list[RaServer], tmp_path: Path
) -> None:
    a, b = two_replicas
    a.proc.kill()
    agent, _ = start_agent(two_replicas, pg_ca, tmp_path)
    try:
        written = [e for e in log_events(agent, "identity_written") if e["why"] == "bootstrap"]
        assert [e["ra"] for e in written] == [b.url]
    finally:
        agent.stop()


def test_agent_moves_on_when_its_replica_answers_503(
    postgres_server: postgres.PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replica a logs in to the database as its own role; taking the role's login away and
    ending its sessions leaves a up but without its store: it answers 503 `unavailable`."""
    db = f"t_failover_{tmp_path.name[-8:].replace('-', '_')}"
    postgres_server.create_database(db)
    postgres_server.psql("CREATE ROLE replica_a LOGIN SUPERUSER")
    try:
        url_b = postgres_server.url(db)
        url_a = url_b.replace(f"user={postgres.ROLE}", "user=replica_a")
        monkeypatch.setenv(ENV_STORE, url_b)
        ca = make_ca(tmp_path, "--store", url_b)
        a = start_ra(ca, tmp_path / "logs", "--store", url_a, name="zt-ra-a")
        b = start_ra(ca, tmp_path / "logs", "--store", url_b, name="zt-ra-b")
        try:
            agent, out = start_agent([a, b], ca, tmp_path)
            try:
                assert rotate_and_wait(agent, out, 1)["ra"] == a.url
                postgres_server.psql("ALTER ROLE replica_a NOLOGIN")
                postgres_server.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename='replica_a'")
                assert rotate_and_wait(agent, out, 2)["ra"] == b.url
                failover = log_events(agent, "ra_failover")
                assert failover and failover[0]["ra"] == a.url, failover
                assert "HTTP 503" in str(failover[0]["reason"]), failover
            finally:
                agent.stop()
        finally:
            a.proc.stop()
            b.proc.stop()
    finally:
        postgres_server.psql("DROP ROLE IF EXISTS replica_a")
