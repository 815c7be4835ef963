"""Several RA worker processes on one store: no double spend, unique serials, and no data
lost or half-written when the RA is killed in the middle of issuing."""

from __future__ import annotations

import gc
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import CaDir, RaServer, start_ra
from zt.agent.material import build_csr, csr_pem
from zt.pki.keys import generate_key


@pytest.fixture
def ra2(ca: CaDir, tmp_path: Path):
    srv = start_ra(ca, tmp_path / "logs", "--workers", "2")
    yield srv
    srv.proc.stop()


def csr_for(service: str) -> str:
    return csr_pem(build_csr(generate_key(), f"spiffe://zt.lab/svc/{service}"))


def test_two_workers_issue_concurrently_with_unique_serials(ra2: RaServer) -> None:
    jobs = [(f"s{i}", ra2.ca.register(f"s{i}"), csr_for(f"s{i}")) for i in range(40)]

    def issue(job: tuple[str, str, str]) -> httpx.Response:
        with ra2.client() as c:
            return c.post("/v1/issue", json={"csr": job[2]}, headers={"Authorization": f"Bearer {job[1]}"})

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(issue, jobs))
    assert [r.status_code for r in responses] == [200] * 40
    serials = {r.json()["serial"] for r in responses}
    assert len(serials) == 40
    stored = {c["serial"] for c in ra2.ca.ztca("list", "--json").json()["certificates"]}
    assert serials <= stored


def test_one_token_raced_from_many_connections_is_spent_once(ra2: RaServer) -> None:
    token = ra2.ca.register("a")
    csrs = [csr_for("a") for _ in range(12)]

    def issue(csr: str) -> httpx.Response:
        with ra2.client() as c:
            return c.post("/v1/issue", json={"csr": csr}, headers={"Authorization": f"Bearer {token}"})

    with ThreadPoolExecutor(12) as pool:
        codes = sorted(r.status_code for r in pool.map(issue, csrs))
    assert codes == [200] + [401] * 11
    listed = ra2.ca.ztca("list", "--json").json()["certificates"]
    assert [c["spiffe_id"] for c in listed if c["via"] == "token"] == ["spiffe://zt.lab/svc/a"]


# The RA is killed mid-stream on purpose: a client connection that dies inside its TLS handshake
# is abandoned by the HTTP library (httpcore) unclosed, and its socket warns when collected. That
# socket is the test client's, not the RA's; the warning is ignored here alone, and whatever the
# kill left behind is collected before the test ends (gc.collect below), so it cannot surface in
# the next test of this worker (it failed one CI run that way).
@pytest.mark.filterwarnings("ignore:unclosed <ssl.SSLSocket:ResourceWarning")
def test_kill_during_issuance_loses_nothing_and_store_stays_consistent(ca: CaDir, tmp_path: Path) -> None:
    ra = start_ra(ca, tmp_path / "logs", "--workers", "2")
    jobs = [(f"k{i}", ca.register(f"k{i}"), csr_for(f"k{i}")) for i in range(150)]
    answered: dict[str, str] = {}
    killed = threading.Event()

    def issue(job: tuple[str, str, str]) -> None:
        # At 40 answers or more, not exactly 40: six threads can add two answers between one
        # check and the next (more likely on a loaded machine), and then the kill never came.
        if len(answered) >= 40 and not killed.is_set():
            killed.set()
            ra.proc.kill()  # SIGKILL to the whole process group, mid-stream
        try:
            with ra.client() as c:
                r = c.post("/v1/issue", json={"csr": job[2]}, headers={"Authorization": f"Bearer {job[1]}"})
            if r.status_code == 200:
                answered[job[0]] = r.json()["serial"]
        except httpx.HTTPError:
            pass

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(issue, jobs))
    gc.collect()  # the clients' abandoned sockets, while this test's warning filter holds
    assert not ra.proc.alive()
    assert 40 <= len(answered) < 150

    db = sqlite3.connect(ca.paths.store)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    certs = dict(db.execute("SELECT serial, identity FROM certificates WHERE via='token'").fetchall())
    used = dict(db.execute("SELECT used_serial, identity FROM tokens WHERE used_at IS NOT NULL").fetchall())
    assert certs == used  # every certificate spent its token, and no token was spent without one
    for service, s in answered.items():  # every answer the clients got is on record
        assert certs.get(s) == service
    db.close()

    again = start_ra(ca, tmp_path / "logs", name="zt-ra-restarted")
    try:
        unused = next(j for j in jobs if j[0] not in {certs[s] for s in certs})
        with again.client() as c:
            r = c.post("/v1/issue", json={"csr": unused[2]}, headers={"Authorization": f"Bearer {unused[1]}"})
        assert r.status_code == 200, r.text
    finally:
        again.proc.stop()
