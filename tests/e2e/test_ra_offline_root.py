"""The RA runs with the intermediate key only (issue 9, "Root key online")."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import make_ca, start_ra
from zt.agent.material import build_csr, csr_pem
from zt.pki.keys import generate_key


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
            r = c.post("/v1/issue", json={"csr": csr_pem(build_csr(generate_key(), "spiffe://zt.lab/svc/svc"))},
                       headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
    finally:
        ra.proc.stop()
    log = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    assert "root.key" not in log and "PRIVATE KEY" not in log
