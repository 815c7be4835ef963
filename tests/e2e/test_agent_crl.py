"""The real `zt-agent` against a CRL publisher that replays an old CRL, serves an expired one, or
an endless body; the agent's CRL state survives restarts."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.conftest import CaDir, RaServer
from tests.e2e.fakes import Answer, FakeServer
from tests.e2e.test_agent import agent_argv, token_file
from zt.ca.authority import Authority
from zt.ca.crl import RevokedEntry, sign_crl
from zt.ca.layout import CaPaths
from zt.pki.crls import crl_number


class CrlPublisher:
    """A fake publisher whose current answer the test sets."""

    def __init__(self) -> None:
        self.answer = Answer(404)
        self.server = FakeServer(lambda seen: self.answer)

    @property
    def url(self) -> str:
        return self.server.url + "/crl"

    def serve(self, der: bytes) -> None:
        self.answer = Answer(200, der, {"Content-Type": "application/pkix-crl"})


@pytest.fixture
def publisher() -> Iterator[CrlPublisher]:
    p = CrlPublisher()
    yield p
    p.server.close()


def crl(
    ca: CaDir, number: int, *, next_update_in: dt.timedelta = dt.timedelta(hours=1), revoked: tuple[int, ...] = ()
) -> bytes:
    auth = Authority.load(CaPaths(ca.dir), "zt.lab")
    now = dt.datetime.now(dt.UTC)
    entries = [RevokedEntry(s, now - dt.timedelta(minutes=1)) for s in revoked]
    return sign_crl(auth, entries, number, now - dt.timedelta(minutes=2), now + next_update_in).public_bytes(
        serialization.Encoding.DER
    )


def run_once(ra: RaServer, out: Path, tmp_path: Path, crl_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """One `zt-agent --once` run; the first bootstraps, later ones reuse the identity (a restart)."""
    first = not (out / "current").exists()
    tok = token_file(ra.ca, "a", tmp_path) if first else None
    argv = agent_argv(ra, "a", out, tok, "--crl-url", crl_url, "--once", *extra)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def events(stderr: str, name: str) -> list[dict[str, object]]:
    return [e for e in (json.loads(line) for line in stderr.splitlines() if line.startswith("{")) if e["event"] == name]


def written_number(out: Path) -> int:
    return crl_number(x509.load_pem_x509_crl((out / "crl.pem").read_bytes()))


def test_restarted_agent_refuses_a_crl_older_than_the_one_on_disk(
    ra: RaServer, publisher: CrlPublisher, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    publisher.serve(crl(ra.ca, 5, revoked=(0x1234,)))
    first = run_once(ra, out, tmp_path, publisher.url)
    assert first.returncode == 0, first.stderr
    assert written_number(out) == 5
    before = (out / "crl.pem").read_bytes()

    publisher.serve(crl(ra.ca, 3))  # a replay of an older CRL, without the revocation
    second = run_once(ra, out, tmp_path, publisher.url)
    assert second.returncode == 0, second.stderr
    assert "identity_reused" in second.stderr  # it really was a restart, not a new bootstrap
    assert events(second.stderr, "crl_state_loaded")[0]["crl_number"] == 5
    refused = events(second.stderr, "crl_rejected")
    assert len(refused) == 1 and refused[0]["why"] == "rollback"
    assert refused[0]["crl_number"] == 3 and refused[0]["have_number"] == 5
    assert (out / "crl.pem").read_bytes() == before  # the revocation stays

    publisher.serve(crl(ra.ca, 5))  # the same number with other content (the revocation dropped)
    third = run_once(ra, out, tmp_path, publisher.url)
    assert events(third.stderr, "crl_rejected")[0]["why"] == "conflicting_number"
    assert (out / "crl.pem").read_bytes() == before

    publisher.serve(crl(ra.ca, 6, revoked=(0x1234, 0x5678)))  # a newer one is taken
    fourth = run_once(ra, out, tmp_path, publisher.url)
    assert events(fourth.stderr, "crl_written")[0]["crl_number"] == 6
    assert written_number(out) == 6


def test_agent_refuses_an_expired_crl(ra: RaServer, publisher: CrlPublisher, tmp_path: Path) -> None:
    out = tmp_path / "out"
    publisher.serve(crl(ra.ca, 7, next_update_in=dt.timedelta(seconds=-30)))
    r = run_once(ra, out, tmp_path, publisher.url)
    assert r.returncode == 0, r.stderr  # the identity is fine; the CRL is not written
    refused = events(r.stderr, "crl_rejected")
    assert refused[0]["why"] == "expired" and refused[0]["crl_number"] == 7 and "next_update" in refused[0]
    assert not (out / "crl.pem").exists()


def endless() -> Iterator[bytes]:
    chunk = b"\0" * 65536
    for _ in range(64 * 16):  # 64 MiB, far more than the cap
        yield chunk


@pytest.mark.parametrize(
    "answer, why_field",
    [
        (lambda: Answer(200, chunks=endless()), "read"),  # no Content-Length: counted while reading
        (lambda: Answer(200, headers={"Content-Length": str(64 << 20)}, chunks=endless()), "announced"),
    ],
)
def test_agent_stops_reading_an_oversized_crl(
    ra: RaServer, publisher: CrlPublisher, tmp_path: Path, answer: object, why_field: str
) -> None:
    out = tmp_path / "out"
    publisher.answer = answer()  # type: ignore[operator]
    r = run_once(ra, out, tmp_path, publisher.url, "--crl-max-bytes", str(1 << 20))
    assert r.returncode == 0, r.stderr
    refused = events(r.stderr, "crl_rejected")
    assert refused[0]["why"] == "too_large" and refused[0]["max_bytes"] == 1 << 20 and why_field in refused[0]
    assert not (out / "crl.pem").exists()
    publisher.server.aborted.wait(10)
    # The agent hung up long before the end: it never took the 64 MiB (socket buffers hold a few MiB).
    assert publisher.server.bytes_sent < 16 << 20, publisher.server.bytes_sent
    assert publisher.server.aborted.is_set()
