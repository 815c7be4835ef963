"""The real zt-agent's CRL client against scripted publishers: long-poll when the publisher
holds the request, the periodic fallback (never a spin) when it answers at once, and every
CRL verified before it is written (older number, foreign signature: rejected and counted)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.conftest import RaServer, make_ca
from tests.e2e.fakes import Answer, FakeServer, Seen
from tests.e2e.test_agent import agent_argv, token_file
from tests.e2e.test_agent_crl import crl, events, written_number
from tests.e2e.test_agent_rotation import scrape
from zt.lab import process
from zt.lab.ports import free_port


class VersionedPublisher:
    """Serves one CRL under ETag "v<n>". `hold` > 0: a conditional request for the current ETag
    is held up to that long (or until `publish` brings a new CRL), as a long-poll publisher
    does; `hold` == 0: answered 304 at once, as a publisher without long-poll does."""

    def __init__(self, der: bytes, hold: float) -> None:
        self.version, self.der, self.hold = 1, der, hold
        self.changed = threading.Condition()
        self.times: list[float] = []
        self.server = FakeServer(self._respond)

    @property
    def url(self) -> str:
        return self.server.url + "/crl"

    def publish(self, der: bytes) -> None:
        with self.changed:
            self.version, self.der = self.version + 1, der
            self.changed.notify_all()

    def _respond(self, seen: Seen) -> Answer:
        self.times.append(time.monotonic())
        with self.changed:
            etag = f'"v{self.version}"'
            if seen.headers.get("If-None-Match") == etag:
                if self.hold > 0:
                    self.changed.wait_for(lambda: f'"v{self.version}"' != etag, timeout=self.hold)
                if f'"v{self.version}"' == etag:
                    applied = {"Preference-Applied": f"wait={self.hold:g}"} if self.hold > 0 else {}
                    return Answer(304, headers={"ETag": etag, **applied})
            return Answer(200, self.der, {"ETag": f'"v{self.version}"', "Content-Type": "application/pkix-crl"})


@pytest.fixture
def publishers() -> Iterator[Callable[[bytes, float], VersionedPublisher]]:
    made: list[VersionedPublisher] = []

    def make(der: bytes, hold: float) -> VersionedPublisher:
        made.append(VersionedPublisher(der, hold))
        return made[-1]

    yield make
    for p in made:
        p.server.close()


def start_agent(ra: RaServer, tmp_path: Path, url: str, *extra: str) -> tuple[process.Proc, Path, str]:
    out, metrics = tmp_path / "out", f"127.0.0.1:{free_port()}"
    argv = agent_argv(ra, "a", out, token_file(ra.ca, "a", tmp_path), "--crl-url", url, "--metrics-listen", metrics)
    agent = process.start("agent", [*argv, *extra], tmp_path / "agent.log")  # a later flag wins
    return agent, out, "http://" + metrics


def test_publisher_without_long_poll_gets_the_periodic_fallback_not_a_spin(
    ra: RaServer, publishers: Callable[[bytes, float], VersionedPublisher], tmp_path: Path
) -> None:
    pub = publishers(crl(ra.ca, 1), 0.0)  # answers 304 at once, whatever Prefer says
    agent, out, _ = start_agent(ra, tmp_path, pub.url, "--crl-interval", "1.5", "--crl-wait", "30")
    try:
        process.wait_until("first CRL", lambda: (out / "crl.pem").exists(), proc=agent)
        first = pub.times[0]
        time.sleep(6)
        window = [t for t in pub.times if t - first <= 6]
        # 1 (bootstrap) + 1 (thread start) + 6 s / 1.5 s: a spinning client would send thousands
        assert 3 <= len(window) <= 7, [round(t - first, 2) for t in window]
        conditional = pub.server.seen[1:]
        assert all(s.headers.get("If-None-Match") == '"v1"' for s in conditional)
        assert all(s.headers.get("Prefer") == "wait=30" for s in conditional)
        assert "Prefer" not in pub.server.seen[0].headers  # nothing to wait for without an ETag
        assert agent.alive()
    finally:
        agent.stop()


def test_long_poll_is_held_then_repeated_at_once_and_a_new_crl_arrives_while_held(
    ra: RaServer, publishers: Callable[[bytes, float], VersionedPublisher], tmp_path: Path
) -> None:
    pub = publishers(crl(ra.ca, 1), 2.0)  # holds conditional requests up to 2 s
    # --crl-interval 60: had the agent fallen back to the periodic fetch, it would ask once a minute
    agent, out, metrics = start_agent(ra, tmp_path, pub.url, "--crl-interval", "60", "--crl-wait", "2")
    try:
        process.wait_until("first CRL", lambda: (out / "crl.pem").exists(), proc=agent)
        process.wait_until("three held requests", lambda: len(pub.times) >= 4, timeout=20, proc=agent)
        gaps = [b - a for a, b in zip(pub.times[1:], pub.times[2:], strict=False)]
        assert all(1.5 <= g <= 4.0 for g in gaps[:2]), gaps  # each held ~2 s, then asked again at once
        assert all(s.headers.get("Prefer") == "wait=2" for s in pub.server.seen[1:])

        published = time.monotonic()
        pub.publish(crl(ra.ca, 2, revoked=(0xABCDEF,)))
        process.wait_until("the new CRL written", lambda: written_number(out) == 2, timeout=10, proc=agent)
        delay = time.monotonic() - published
        assert delay < 1.5, delay  # delivered by the held request, not by the next periodic fetch
        crl_file = x509.load_pem_x509_crl((out / "crl.pem").read_bytes())
        assert crl_file.get_revoked_certificate_by_serial_number(0xABCDEF) is not None
        got = scrape(metrics)
        assert got['crl_fetch_total{result="updated"}'] == 2 and got["crl_number"] == 2
        assert got['crl_fetch_total{result="not_modified"}'] >= 2
        assert got["crl_age_seconds"] < 600  # thisUpdate two minutes back, as crl() signs it
    finally:
        agent.stop()


def test_older_or_foreign_crls_are_rejected_counted_and_never_written(
    ra: RaServer, publishers: Callable[[bytes, float], VersionedPublisher], tmp_path: Path
) -> None:
    pub = publishers(crl(ra.ca, 5, revoked=(0x1234,)), 0.0)
    agent, out, metrics = start_agent(ra, tmp_path, pub.url, "--crl-interval", "0.3")
    try:
        process.wait_until("CRL number 5 written", lambda: (out / "crl.pem").exists(), proc=agent)
        good = (out / "crl.pem").read_bytes()

        pub.publish(crl(ra.ca, 3))  # older: a replay that would un-revoke 0x1234
        process.wait_until("the rollback rejected", lambda: events(agent.log_text(), "crl_rejected"), proc=agent)
        rejected = events(agent.log_text(), "crl_rejected")[0]
        assert rejected["why"] == "rollback" and rejected["crl_number"] == 3 and rejected["have_number"] == 5

        other = make_ca(tmp_path / "other")  # a CA of the same shape and names, with other keys
        pub.publish(crl(other, 9))
        process.wait_until(
            "the foreign CRL rejected", lambda: len(events(agent.log_text(), "crl_rejected")) >= 2, proc=agent
        )
        whys = {str(e["why"]) for e in events(agent.log_text(), "crl_rejected")}
        assert whys == {"rollback", "bad_signature"}
        assert (out / "crl.pem").read_bytes() == good
        got = scrape(metrics)
        assert got['crl_fetch_total{result="rejected"}'] >= 2 and got["crl_number"] == 5
        assert got['crl_fetch_total{result="updated"}'] == 1
        assert agent.alive()
    finally:
        agent.stop()
