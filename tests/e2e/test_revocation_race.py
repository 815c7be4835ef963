"""Revocation against a live attacker (issue 9): the real zt-ra over HTTPS, the real `ztca` CLI.

The attacker holds a stolen key of a service and renews from it, from several threads and
along every lineage it gets, while the operator runs `ztca revoke --service`. Whatever was in
flight, the service must end with zero live certificates, and every further renewal must be
refused with a reason that names the revocation.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.conftest import CaDir, RaServer, start_ra
from zt.agent.material import build_csr, csr_pem
from zt.clock import utcnow
from zt.pki.keys import PrivateKey, generate_key
from zt.pki.renewal_proof import make_renewal_proof

ROUNDS = 5
ATTACKERS = 4
ATTACK_SECONDS = 20.0  # per round, upper bound; the threads stop as soon as they are refused


@pytest.fixture
def ra2(ca: CaDir, tmp_path: Path) -> Iterator[RaServer]:
    # No issuance limit: the attackers renew as fast as they can, which is the race under test
    # (with the default 10/1m they would be refused with 429 before the revocation lands).
    srv = start_ra(ca, tmp_path / "logs", "--workers", "2", "--rate-issue", "0")
    yield srv
    srv.proc.stop()


def sid(service: str) -> str:
    return f"spiffe://zt.lab/svc/{service}"


def ztca_cli(ca: CaDir, *argv: str) -> subprocess.CompletedProcess[str]:
    """The real CLI, as an operator runs it: its own process, its own connection to the store."""
    verb, *rest = argv
    return subprocess.run(
        [sys.executable, "-m", "zt.cli.ztca", verb, "--dir", str(ca.dir), *rest],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def bootstrap(ra: RaServer, service: str) -> tuple[PrivateKey, str]:
    token = ra.ca.register(service)
    key = generate_key()
    with ra.client() as c:
        r = c.post(
            "/v1/issue",
            json={"csr": csr_pem(build_csr(key, sid(service)))},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert r.status_code == 200, r.text
    return key, r.json()["chain"]


def renew(client: httpx.Client, key: PrivateKey, chain_pem: str, spiffe_id: str) -> tuple[PrivateKey, httpx.Response]:
    new_key = generate_key()
    csr = build_csr(new_key, spiffe_id)
    chain = x509.load_pem_x509_certificates(chain_pem.encode())
    proof = make_renewal_proof(key, chain, spiffe_id, csr.public_bytes(serialization.Encoding.DER), utcnow())
    return new_key, client.post("/v1/renew", json={"csr": csr_pem(csr), "proof": proof})


@dataclass
class Attacker:
    """Renews from the stolen key, then from whatever it was given, until refused."""

    key: PrivateKey
    chain: str
    spiffe_id: str
    renewed: int = 0
    refusals: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def run(self, ra: RaServer, deadline: float) -> None:
        with ra.client() as c:
            while time.monotonic() < deadline:
                try:
                    new_key, r = renew(c, self.key, self.chain, self.spiffe_id)
                except httpx.HTTPError as e:
                    self.errors.append(repr(e))
                    continue
                if r.status_code == 200:
                    self.key, self.chain = new_key, r.json()["chain"]
                    self.renewed += 1
                    continue
                self.refusals.append({"status": r.status_code, **r.json()})
                return


def live_certificates(ca: CaDir, service: str) -> list[dict[str, Any]]:
    r = ztca_cli(ca, "list", "--json")
    assert r.returncode == 0, r.stderr
    return [
        c
        for c in json.loads(r.stdout)["certificates"]
        if c["identity"] == service and not c["revoked"] and not c["expired"]
    ]


def test_concurrent_renewals_during_revoke_service_end_with_zero_live_certificates(ra2: RaServer) -> None:
    for round_ in range(ROUNDS):
        service = f"victim-{round_}"
        stolen_key, stolen_chain = bootstrap(ra2, service)
        attackers = [Attacker(stolen_key, stolen_chain, sid(service)) for _ in range(ATTACKERS)]
        deadline = time.monotonic() + ATTACK_SECONDS
        threads = [threading.Thread(target=a.run, args=(ra2, deadline)) for a in attackers]
        for t in threads:
            t.start()
        # Let the attack get going (some renewals recorded, more in flight), then revoke.
        while sum(a.renewed for a in attackers) < ATTACKERS and time.monotonic() < deadline:
            time.sleep(0.05)
        r = ztca_cli(ra2.ca, "revoke", "--service", service, "--reason", "key-compromise", "--json")
        assert r.returncode == 0, r.stderr
        for t in threads:
            t.join(timeout=ATTACK_SECONDS + 30)
        assert not any(t.is_alive() for t in threads)

        live = live_certificates(ra2.ca, service)
        assert live == [], (
            f"round {round_}: {len(live)} certificate(s) survived revoke --service, e.g. "
            f"{[c['serial'] for c in live[:3]]}"
        )
        renewed = sum(a.renewed for a in attackers)
        assert renewed >= ATTACKERS, f"round {round_}: the attack never got going ({renewed} renewals)"
        for a in attackers:
            assert a.refusals, f"round {round_}: an attacker was never refused ({a.errors[-3:]})"
            assert a.refusals[-1]["status"] == 401
            assert "revoked" in a.refusals[-1]["reason"], a.refusals[-1]
            # And once more from the last key each attacker holds: still refused, naming the revocation.
            with ra2.client() as c:
                _, again = renew(c, a.key, a.chain, a.spiffe_id)
            assert again.status_code == 401 and again.json()["error"] == "revoked_identity", again.text
            assert "revoked" in again.json()["reason"]


def test_revoke_service_voids_tokens_and_reregistering_needs_reenable(ra: RaServer) -> None:
    token = ra.ca.register("svc")  # outstanding, unused
    bootstrap(ra, "svc")
    revoked = ztca_cli(ra.ca, "revoke", "--service", "svc", "--json")
    assert revoked.returncode == 0, revoked.stderr
    with ra.client() as c:
        r = c.post(
            "/v1/issue",
            json={"csr": csr_pem(build_csr(generate_key(), sid("svc")))},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert r.status_code == 401 and r.json()["error"] == "revoked_identity", r.text

    # Registering a revoked service again is refused, over HTTP and by ztca, unless re-enabled.
    with ra.client() as c:
        r = c.post("/v1/register", json={"service": "svc"}, headers={"Authorization": f"Bearer {ra.ca.admin_token()}"})
    assert r.status_code == 403 and r.json()["error"] == "revoked_identity", r.text
    refused = ztca_cli(ra.ca, "register", "svc")
    assert refused.returncode == 1 and "--reenable" in refused.stderr
    again = ztca_cli(ra.ca, "register", "svc", "--reenable", "--json")
    assert again.returncode == 0, again.stderr
    new_token = json.loads(again.stdout)["token"]
    with ra.client() as c:
        r = c.post(
            "/v1/issue",
            json={"csr": csr_pem(build_csr(generate_key(), sid("svc")))},
            headers={"Authorization": f"Bearer {new_token}"},
        )
    assert r.status_code == 200, r.text
    assert len(live_certificates(ra.ca, "svc")) == 1  # only the new one; the old stay revoked


def test_revoke_service_publishes_a_crl_listing_every_certificate(ra: RaServer) -> None:
    key, chain = bootstrap(ra, "svc")
    with ra.client() as c:
        _, r = renew(c, key, chain, sid("svc"))
    assert r.status_code == 200
    revoked = ztca_cli(ra.ca, "revoke", "--service", "svc", "--json")
    doc = json.loads(revoked.stdout)
    assert len(doc["revoked"]) == 2
    crl = x509.load_der_x509_crl(ra.ca.paths.crl_der.read_bytes())
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == doc["crl_number"]
    for serial in doc["revoked"]:
        assert crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None


# -- key compromise reaches the renewal chain --------------------------------------------------


def test_key_compromise_of_an_ancestor_stops_its_renewed_descendants(ra: RaServer) -> None:
    key_a, chain_a = bootstrap(ra, "svc")
    with ra.client() as c:
        key_b, rb = renew(c, key_a, chain_a, sid("svc"))
        assert rb.status_code == 200
        key_c, rc = renew(c, key_b, rb.json()["chain"], sid("svc"))
        assert rc.status_code == 200
    serial_a = x509.load_pem_x509_certificates(chain_a.encode())[0].serial_number
    r = ztca_cli(ra.ca, "revoke", format(serial_a, "x"), "--reason", "key-compromise", "--json")
    assert r.returncode == 0, r.stderr
    revoked = set(json.loads(r.stdout)["revoked"])
    assert revoked == {format(serial_a, "x"), rb.json()["serial"], rc.json()["serial"]}
    with ra.client() as c:
        _, again = renew(c, key_c, rc.json()["chain"], sid("svc"))
    assert again.status_code == 401 and again.json()["error"] == "revoked_certificate", again.text
    assert "revoked" in again.json()["reason"]


def test_revocation_for_another_reason_leaves_descendants_renewable(ra: RaServer) -> None:
    key_a, chain_a = bootstrap(ra, "svc")
    with ra.client() as c:
        key_b, rb = renew(c, key_a, chain_a, sid("svc"))
    serial_a = x509.load_pem_x509_certificates(chain_a.encode())[0].serial_number
    r = ztca_cli(ra.ca, "revoke", format(serial_a, "x"), "--reason", "superseded", "--json")
    assert json.loads(r.stdout)["revoked"] == [format(serial_a, "x")]
    with ra.client() as c:
        _, again = renew(c, key_b, rb.json()["chain"], sid("svc"))
    assert again.status_code == 200, again.text


# -- the RA's own names (issue 9, low) ---------------------------------------------------------


def test_zt_ra_service_name_is_reserved_and_revoke_cannot_reach_the_ras_certificate(ra: RaServer) -> None:
    with ra.client() as c:
        r = c.post(
            "/v1/register", json={"service": "zt-ra"}, headers={"Authorization": f"Bearer {ra.ca.admin_token()}"}
        )
    assert r.status_code == 400 and r.json()["error"] == "reserved_service_name", r.text
    assert "reserved" in r.json()["reason"]
    cli = ztca_cli(ra.ca, "register", "zt-ra")
    assert cli.returncode == 1 and "reserved" in cli.stderr
    cli = ztca_cli(ra.ca, "revoke", "--service", "zt-ra")
    assert cli.returncode == 1 and "not registered" in cli.stderr

    # A store from before the name was reserved may hold a workload called zt-ra: revoking that
    # service still does not reach the RA's own certificate (recorded under the same name).
    with sqlite3.connect(ra.ca.paths.store) as db:
        db.execute("INSERT INTO identities (name, spiffe_id, created_at) VALUES ('zt-ra', ?, 0)", (sid("zt-ra"),))
    cli = ztca_cli(ra.ca, "revoke", "--service", "zt-ra", "--reason", "key-compromise", "--json")
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["revoked"] == []
    ra_cert = [c for c in json.loads(ztca_cli(ra.ca, "list", "--json").stdout)["certificates"] if c["via"] == "server"]
    assert ra_cert and not any(c["revoked"] for c in ra_cert)
    with ra.client() as c:  # the RA still serves with its certificate
        assert c.get("/v1/status").status_code == 200
