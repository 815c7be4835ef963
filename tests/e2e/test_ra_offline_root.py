"""The RA runs with the intermediate key only (issue 9, "Root key online")."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.conftest import make_ca, start_ra
from zt.agent.material import build_csr, csr_pem
from zt.clock import utcnow
from zt.pki.keys import generate_key
from zt.pki.renewal_proof import make_renewal_proof

SID = "spiffe://zt.lab/svc/svc"


def test_ra_starts_and_issues_with_no_root_key_in_its_directory(tmp_path: Path) -> None:
    phrase = tmp_path / "phrase"
    phrase.write_text("a passphrase the RA never has\n")
    ca = make_ca(tmp_path, "--root-key-passphrase-file", str(phrase))
    assert not ca.paths.root_key.exists()
    # The encrypted root key is there, but unreadable: an RA that touched it would fail.
    os.chmod(ca.paths.root_key_encrypted, 0)
    ra = start_ra(ca, tmp_path / "logs")
    try:
        token = ca.register("svc")
        with ra.client() as c:
            r = c.post(
                "/v1/issue",
                json={"csr": csr_pem(build_csr(generate_key(), "spiffe://zt.lab/svc/svc"))},
                headers={"Authorization": f"Bearer {token}"},
            )
        assert r.status_code == 200, r.text
    finally:
        ra.proc.stop()
    log = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    assert "root.key" not in log and "PRIVATE KEY" not in log


def test_after_rotate_intermediate_old_leaves_renew_onto_the_new_intermediate(tmp_path: Path) -> None:
    root_key = tmp_path / "root.key"
    ca = make_ca(tmp_path, "--root-key-out", str(root_key))
    ra = start_ra(ca, tmp_path / "logs")
    try:
        token = ca.register("svc")
        key = generate_key()
        with ra.client() as c:
            first = c.post(
                "/v1/issue", json={"csr": csr_pem(build_csr(key, SID))}, headers={"Authorization": f"Bearer {token}"}
            ).json()
    finally:
        ra.proc.stop()
    old_inter = ca.paths.intermediate_cert.read_bytes()
    r = ca.ztca("rotate-intermediate", "--root-key", str(root_key))
    assert r.code == 0, r.err
    assert ca.paths.intermediate_cert.read_bytes() != old_inter
    ra = start_ra(ca, tmp_path / "logs2")
    try:
        with ra.client() as c:
            new_key = generate_key()
            csr = build_csr(new_key, SID)
            chain = x509.load_pem_x509_certificates(first["chain"].encode())
            proof = make_renewal_proof(key, chain, SID, csr.public_bytes(serialization.Encoding.DER), utcnow())
            r2 = c.post("/v1/renew", json={"csr": csr_pem(csr), "proof": proof})
        assert r2.status_code == 200, r2.text
        new_chain = x509.load_pem_x509_certificates(r2.json()["chain"].encode())
        assert new_chain[1].public_bytes(serialization.Encoding.PEM) == ca.paths.intermediate_cert.read_bytes()
        new_chain[0].verify_directly_issued_by(new_chain[1])
    finally:
        ra.proc.stop()
