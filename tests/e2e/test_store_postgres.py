"""Two RA replicas (real zt-ra processes) on one real PostgreSQL database: the invariants that
must hold across replicas (issue 16, docs/scaling.md).

Each replica is its own process with its own connection pool; all they share is the database
(and, on this one host, the CA directory: the CA key, the audit log file and the CRL files).
Requests alternate between the replicas, as a load balancer's would.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.conftest import CaDir, RaServer, make_ca, run_ztca, start_ra
from zt.agent.material import build_csr, csr_pem
from zt.agent.ra_client import RaClient
from zt.ca.authority import Authority
from zt.ca.layout import CaPaths
from zt.clock import utcnow
from zt.errors import RemoteError
from zt.pki.keys import generate_key
from zt.pki.renewal_proof import make_renewal_proof
from zt.ra.revocation import publish_crl, sync_crl_file
from zt.ra.store_open import ENV_STORE, open_store


def sid(service: str) -> str:
    return f"spiffe://zt.lab/svc/{service}"


def csr_for(service: str, key: Any = None) -> str:
    return csr_pem(build_csr(key or generate_key(), sid(service)))


@dataclass
class Replicas:
    ca: CaDir
    url: str  # the database
    ras: list[RaServer]

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.ca.admin_token()}"}

    def issue(self, i: int, token: str, service: str, key: Any = None) -> httpx.Response:
        with self.ras[i % 2].client() as c:
            return c.post(
                "/v1/issue", json={"csr": csr_for(service, key)}, headers={"Authorization": f"Bearer {token}"}
            )

    def crl_published(self) -> list[int]:
        """CRL numbers every replica logged as published, in no particular order."""
        numbers = []
        for ra in self.ras:
            for line in ra.proc.log_path.read_text().splitlines():
                if line.startswith("{") and '"crl_published"' in line:
                    numbers.append(int(json.loads(line)["crl_number"]))
        return numbers


def start_replicas(ca: CaDir, url: str, logs: Path, *extra: str) -> list[RaServer]:
    # One after the other: each writes the RA's TLS certificate into the CA directory at start
    # (a replica per host would have its own), and has loaded it once /v1/status answers.
    return [start_ra(ca, logs, "--store", url, *extra, name=f"zt-ra-{n}") for n in ("a", "b")]


@pytest.fixture
def pg_ca(tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> CaDir:
    """A CA whose store is the test's PostgreSQL database; `ztca` commands use it (ZT_STORE)."""
    monkeypatch.setenv(ENV_STORE, pg_url)
    return make_ca(tmp_path, "--store", pg_url, "--crl-validity", "1h")


@pytest.fixture
def replicas(pg_ca: CaDir, pg_url: str, tmp_path: Path) -> Iterator[Replicas]:
    ras = start_replicas(pg_ca, pg_url, tmp_path / "logs")
    yield Replicas(pg_ca, pg_url, ras)
    for ra in ras:
        ra.proc.stop()


def test_postgres_store_is_the_one_ztca_and_the_replicas_use(replicas: Replicas) -> None:
    """The CA directory's SQLite file is not made at all; what ztca registers, a replica issues."""
    assert not replicas.ca.paths.store.exists()
    assert replicas.issue(1, replicas.ca.register("one"), "one").status_code == 200
    status = replicas.ca.ztca("status", "--json").json()
    # One workload certificate, and each replica's own TLS certificate (issued at its start).
    assert (status["identities"], status["certificates"]) == (1, 3)


def test_token_raced_across_replicas_is_spent_once(replicas: Replicas) -> None:
    for round_ in range(3):
        service = f"race{round_}"
        token = replicas.ca.register(service)
        with ThreadPoolExecutor(12) as pool:
            futures = [pool.submit(replicas.issue, i, token, service) for i in range(12)]
            codes = sorted(f.result().status_code for f in futures)
        assert codes == [200] + [401] * 11, codes
    listed = replicas.ca.ztca("list", "--json").json()["certificates"]
    assert sorted(c["identity"] for c in listed if c["via"] == "token") == ["race0", "race1", "race2"]


def test_serials_are_unique_and_all_recorded_across_replicas(replicas: Replicas) -> None:
    jobs = [(i, replicas.ca.register(f"s{i}"), f"s{i}") for i in range(40)]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda j: replicas.issue(j[0], j[1], j[2]), jobs))
    assert [r.status_code for r in responses] == [200] * 40
    serials = [r.json()["serial"] for r in responses]
    assert len(set(serials)) == 40
    stored = {c["serial"] for c in replicas.ca.ztca("list", "--json").json()["certificates"]}
    assert set(serials) <= stored


def test_crl_numbers_only_increase_under_concurrent_revocations_on_both_replicas(replicas: Replicas) -> None:
    issued = [replicas.issue(i, replicas.ca.register(f"r{i}"), f"r{i}") for i in range(16)]
    assert all(r.status_code == 200 for r in issued)
    answered: list[tuple[int, int]] = []  # (CRL number, the revocation's index)

    def revoke(i: int) -> None:
        with replicas.ras[i % 2].client() as c:
            r = c.post("/v1/revoke", json={"serial": issued[i].json()["serial"]}, headers=replicas.admin())
        assert r.status_code == 200, r.text
        answered.append((r.json()["crl_number"], i))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(revoke, range(16)))
    numbers = [n for n, _ in answered]
    assert len(set(numbers)) == 16, f"a CRL number was given twice: {sorted(numbers)}"
    # Every published number once, across both replicas' logs (the background refresher's too),
    # and the CRL on disk is the latest: nothing published out of order.
    published = replicas.crl_published()
    assert len(published) == len(set(published)), sorted(published)
    on_disk = x509.load_der_x509_crl(replicas.ca.paths.crl_der.read_bytes())
    number = on_disk.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number == max(numbers + published)
    listed = {e.serial_number for e in on_disk}
    assert {int(r.json()["serial"], 16) for r in issued} <= listed


def test_revocation_on_one_replica_is_refused_by_the_other_at_once(replicas: Replicas) -> None:
    for round_ in range(3):
        key = generate_key()
        r = replicas.issue(0, replicas.ca.register(f"v{round_}"), f"v{round_}", key)
        assert r.status_code == 200, r.text
        with replicas.ras[0].client() as c:
            assert (
                c.post("/v1/revoke", json={"serial": r.json()["serial"]}, headers=replicas.admin()).status_code == 200
            )
        # Straight after the 200 from replica a, replica b refuses the revoked certificate.
        new_key = generate_key()
        csr = build_csr(new_key, sid(f"v{round_}"))
        chain = x509.load_pem_x509_certificates(r.json()["chain"].encode())
        proof = make_renewal_proof(
            key, chain, sid(f"v{round_}"), csr.public_bytes(serialization.Encoding.DER), utcnow()
        )
        with replicas.ras[1].client() as c:
            renewed = c.post("/v1/renew", json={"csr": csr_pem(csr), "proof": proof})
        assert renewed.status_code == 401, renewed.text
        assert renewed.json()["error"] == "revoked_certificate"


def test_identity_rate_limit_is_shared_by_the_replicas(pg_ca: CaDir, pg_url: str, tmp_path: Path) -> None:
    ras = start_replicas(pg_ca, pg_url, tmp_path / "logs", "--rate-issue", "3/1m")
    try:
        group = Replicas(pg_ca, pg_url, ras)
        codes = [group.issue(i, pg_ca.register("busy"), "busy").status_code for i in range(5)]
        # Three in the window in all, not three per replica: the 4th and 5th (b, a) are refused.
        assert codes == [200, 200, 200, 429, 429], codes
    finally:
        for ra in ras:
            ra.proc.stop()


def test_lockout_is_shared_by_the_replicas(pg_ca: CaDir, pg_url: str, tmp_path: Path) -> None:
    ras = start_replicas(pg_ca, pg_url, tmp_path / "logs", "--lockout-threshold", "3", "--lockout-base", "30s")
    try:
        group = Replicas(pg_ca, pg_url, ras)
        wrong = "zt-bootstrap-" + "A" * 43
        codes = [group.issue(i, wrong, "a").status_code for i in range(3)]
        assert codes == [401, 401, 429], codes  # a, b, a: the third failure locks the source out
        # Locked out at both replicas, even for a good token.
        good = pg_ca.register("a")
        assert [group.issue(i, good, "a").status_code for i in (1, 0)] == [429, 429]
    finally:
        for ra in ras:
            ra.proc.stop()


def test_crl_reissue_taken_over_by_the_survivor_when_a_replica_dies(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CRL valid 10 s is due every 5 s; each replica checks every 0.5 s. Kill -9 one replica:
    the other goes on re-issuing, and no number is ever published twice."""
    monkeypatch.setenv(ENV_STORE, pg_url)
    ca = make_ca(tmp_path, "--store", pg_url, "--crl-validity", "10s")
    ras = start_replicas(ca, pg_url, tmp_path / "logs")
    group = Replicas(ca, pg_url, ras)
    try:
        deadline = time.monotonic() + 30
        while len(group.crl_published()) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(group.crl_published()) >= 2, "no CRL re-issued in 30 s with two replicas"
        before = max(group.crl_published())
        ras[0].proc.kill()
        killed_at = time.monotonic()
        takeover = None
        while time.monotonic() < killed_at + 30:
            survivors = [
                json.loads(line)["crl_number"]
                for line in ras[1].proc.log_path.read_text().splitlines()
                if line.startswith("{") and '"crl_published"' in line
            ]
            if any(n > before for n in survivors):
                takeover = time.monotonic() - killed_at
                break
            time.sleep(0.1)
        assert takeover is not None, f"replica b published nothing after {before} in 30 s"
        print(f"CRL re-issue taken over {takeover:.2f} s after the kill (due every 5 s)")
        published = group.crl_published()
        assert len(published) == len(set(published)), sorted(published)
    finally:
        for ra in ras:
            ra.proc.stop()


def test_killed_lock_holder_releases_the_write_lock_at_once(replicas: Replicas) -> None:
    """A replica killed in the middle of its writes leaves no lock behind: the other replica's
    next issuance succeeds within seconds (the server drops a dead session's advisory lock)."""
    jobs = [(i, replicas.ca.register(f"k{i}"), f"k{i}") for i in range(60)]
    killed = threading.Event()
    answered: list[str] = []

    def issue(job: tuple[int, str, str]) -> None:
        if len(answered) >= 15 and not killed.is_set():
            killed.set()
            replicas.ras[0].proc.kill()
        try:
            r = replicas.issue(*job)
        except httpx.HTTPError:
            return
        if r.status_code == 200:
            answered.append(r.json()["serial"])

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(issue, jobs))
    assert killed.is_set()
    t0 = time.monotonic()
    r = replicas.issue(1, replicas.ca.register("after"), "after")
    assert r.status_code == 200, r.text
    print(f"first issuance on the survivor after the kill: {time.monotonic() - t0:.2f} s")
    listed = replicas.ca.ztca("list", "--json").json()["certificates"]
    assert set(answered) <= {c["serial"] for c in listed}, "a replica answered with a certificate the store lacks"
    # Nothing issued twice: each one-time token gave at most one certificate.
    by_token = [c["identity"] for c in listed if c["via"] == "token"]
    assert len(by_token) == len(set(by_token)), sorted(by_token)
    assert os.environ[ENV_STORE] == replicas.url


def test_a_replica_on_another_host_copies_the_latest_crl_from_the_store(
    pg_ca: CaDir, pg_url: str, tmp_path: Path
) -> None:
    """The replica that re-issues writes its own files; one on another host (here: a copy of
    the CA directory) brings its files up to the store's CRL at its next refresher tick."""
    other_host = CaPaths(tmp_path / "other-host")
    shutil.copytree(pg_ca.dir, other_host.dir)
    store = open_store(pg_url, pg_ca.paths)
    try:
        published = publish_crl(store, Authority.load(pg_ca.paths, "zt.lab"), pg_ca.paths, utcnow())
        assert other_host.crl_der.read_bytes() != pg_ca.paths.crl_der.read_bytes()
        assert sync_crl_file(store, other_host) == published.number
        assert other_host.crl_der.read_bytes() == pg_ca.paths.crl_der.read_bytes()
        assert other_host.crl_pem.read_bytes() == pg_ca.paths.crl_pem.read_bytes()
        assert sync_crl_file(store, other_host) is None  # current: nothing written
    finally:
        store.close()


def test_store_copy_moves_an_sqlite_ca_to_postgres_and_replicas_go_on_from_it(
    ca: CaDir, pg_url: str, tmp_path: Path
) -> None:
    """`ztca store-copy`: every row, the audit chain still verifying against the copied rows, and
    a replica on the copy renews a certificate the SQLite RA issued."""
    key = generate_key()
    ra = start_ra(ca, tmp_path / "logs", name="zt-ra-sqlite")
    try:
        with ra.client() as c:
            first = c.post(
                "/v1/issue",
                json={"csr": csr_for("moved", key)},
                headers={"Authorization": f"Bearer {ca.register('moved')}"},
            )
        assert first.status_code == 200, first.text
    finally:
        ra.proc.stop()
    before = ca.ztca("list", "--json").json()
    copied = ca.ztca("store-copy", "--to", pg_url, "--json")
    assert copied.code == 0, copied.err
    assert copied.json()["rows"]["certificates"] == len(before["certificates"])
    assert ca.ztca("store-copy", "--to", pg_url).code != 0  # never into a store that has one
    after = ca.ztca("list", "--json", "--store", pg_url).json()
    assert after == before
    assert run_ztca("audit", "verify", "--dir", str(ca.dir), "--store", pg_url).code == 0
    replica = start_ra(ca, tmp_path / "logs", "--store", pg_url, name="zt-ra-pg")
    try:
        new_key = generate_key()
        csr = build_csr(new_key, sid("moved"))
        chain = x509.load_pem_x509_certificates(first.json()["chain"].encode())
        proof = make_renewal_proof(key, chain, sid("moved"), csr.public_bytes(serialization.Encoding.DER), utcnow())
        with replica.client() as c:
            renewed = c.post("/v1/renew", json={"csr": csr_pem(csr), "proof": proof})
        assert renewed.status_code == 200, renewed.text
    finally:
        replica.proc.stop()
    assert run_ztca("audit", "verify", "--dir", str(ca.dir), "--store", pg_url).code == 0  # the id sequence went on


def test_load_through_failover_clients_loses_no_request_when_a_replica_is_killed(replicas: Replicas) -> None:
    """The chaos plan of issue 16 on two replicas: issuance load from clients that fail over
    as the agent does (zt.agent.ra_client, both replicas listed, half of them starting on each),
    kill -9 of one replica in the middle. Every request is answered 200 (one whose answer was
    lost with the replica is retried on the other, with the same token and CSR, and gets the
    certificate recorded before the kill); every certificate answered is in the store; no token
    gave two."""
    roots = x509.load_pem_x509_certificates(replicas.ca.paths.bundle.read_bytes())
    urls = [ra.url for ra in replicas.ras]
    jobs = [(i, replicas.ca.register(f"L{i}"), csr_for(f"L{i}")) for i in range(60)]
    answered: dict[str, str] = {}
    failed: list[str] = []
    killed = threading.Event()

    def client_thread(k: int) -> None:
        client = RaClient(urls if k % 2 == 0 else urls[::-1], roots)
        try:
            for i, token, csr in jobs[k::6]:
                if len(answered) >= 15 and not killed.is_set():
                    killed.set()
                    replicas.ras[0].proc.kill()
                try:
                    answered[f"L{i}"] = str(client.issue(token, csr, None)["serial"])
                except RemoteError as e:
                    failed.append(f"L{i}: {e}")
        finally:
            client.close()

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(client_thread, range(6)))
    assert killed.is_set()
    assert failed == [], failed
    assert len(answered) == 60
    listed = replicas.ca.ztca("list", "--json").json()["certificates"]
    stored = {c["serial"]: c["identity"] for c in listed}
    assert all(stored.get(serial) == name for name, serial in answered.items()), "an answer the store lacks"
    by_token = [c["identity"] for c in listed if c["via"] == "token"]
    assert sorted(by_token) == sorted(answered), "a token gave two certificates, or none"
