"""The atomic writer and the reader's contract: a reader never pairs a new cert with an old key."""

from __future__ import annotations

import datetime as dt
import os
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.conftest import make_ca
from zt.agent.material import Material, build_csr, material_from_response
from zt.agent.writer import KEEP_GENERATIONS, CertDirWriter, read_current
from zt.ca.authority import Authority
from zt.ca.layout import CaPaths
from zt.clock import utcnow
from zt.pki.keys import KeyType, generate_key
from zt.spiffe import workload_id

SID = "spiffe://zt.lab/svc/a"


def issue(auth: Authority, kind: KeyType = KeyType.EC_P256) -> Material:
    key = generate_key(kind)
    leaf = auth.sign_leaf(key.public_key(), workload_id("zt.lab", "a"), dt.timedelta(hours=1), utcnow(), None)
    return material_from_response(key, auth.chain_pem(leaf).decode(), auth.bundle_pem().decode(), SID)


def authority(tmp_path: Path) -> Authority:
    return Authority.load(CaPaths(make_ca(tmp_path).dir), "zt.lab")


def test_writer_produces_contract_layout_and_pkcs12_that_opens(tmp_path: Path) -> None:
    auth = authority(tmp_path)
    out = tmp_path / "out"
    m = issue(auth)
    gen = CertDirWriter(out).write(m)
    assert os.readlink(out / "current") == gen
    assert os.readlink(out / "key.pem") == "current/key.pem"
    password = (out / "keystore.pass").read_bytes()
    _key, cert, extra = pkcs12.load_key_and_certificates((out / "keystore.p12").read_bytes(), password)
    assert cert is not None and cert.serial_number == m.leaf.serial_number
    assert [c.subject for c in extra] == [auth.certificate.subject]
    assert oct(os.stat(out / "current" / "keystore.p12").st_mode & 0o777) == "0o600"
    trust = pkcs12.load_pkcs12((out / "truststore.p12").read_bytes(), password)
    assert [c.certificate for c in trust.additional_certs] == list(auth.roots)


def test_writer_keeps_a_few_generations_and_prunes_older(tmp_path: Path) -> None:
    auth = authority(tmp_path)
    out = tmp_path / "out"
    w = CertDirWriter(out)
    for _ in range(KEEP_GENERATIONS + 3):
        last = w.write(issue(auth))
    gens = sorted(p.name for p in out.iterdir() if p.name.startswith("gen-"))
    assert len(gens) == KEEP_GENERATIONS
    assert gens[-1] == last


def test_reader_never_sees_new_certificate_with_old_key(tmp_path: Path) -> None:
    """Rotate as fast as possible while readers follow the contract; every pair must match."""
    auth = authority(tmp_path)
    out = tmp_path / "out"
    w = CertDirWriter(out)
    materials = [issue(auth) for _ in range(6)]
    w.write(materials[0])
    stop = threading.Event()
    bad: list[str] = []
    reads = [0]

    def reader() -> None:
        while not stop.is_set():
            gdir = (out / "current").resolve()
            try:
                key = serialization.load_pem_private_key((gdir / "key.pem").read_bytes(), None)
                cert = x509.load_pem_x509_certificate((gdir / "cert.pem").read_bytes())
            except FileNotFoundError:
                bad.append("generation vanished under a reader")  # pruned too early
                continue
            if key.public_key() != cert.public_key():
                bad.append(f"mismatch in {gdir.name}")
            reads[0] += 1

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for i in range(60):
        w.write(materials[i % len(materials)])
    stop.set()
    for t in threads:
        t.join()
    assert bad == []
    assert reads[0] > 50


def test_read_current_returns_none_for_missing_or_mismatched(tmp_path: Path) -> None:
    auth = authority(tmp_path)
    out = tmp_path / "out"
    assert read_current(out) is None
    m = issue(auth)
    CertDirWriter(out).write(m)
    got = read_current(out)
    assert got is not None and got.serial == m.serial and got.spiffe_id == SID
    other = issue(auth)
    gdir = (out / "current").resolve()
    (gdir / "key.pem").chmod(0o600)
    from zt.pki.encoding import key_pem

    (gdir / "key.pem").write_bytes(key_pem(other.key))
    assert read_current(out) is None


def test_material_from_response_refuses_wrong_key_or_identity(tmp_path: Path) -> None:
    import re

    import pytest

    from zt.errors import RemoteError

    auth = authority(tmp_path)
    m = issue(auth)
    stranger = generate_key()
    with pytest.raises(RemoteError, match="another key") as e1:
        material_from_response(stranger, auth.chain_pem(m.leaf).decode(), auth.bundle_pem().decode(), SID)
    with pytest.raises(RemoteError, match=re.escape("we asked for spiffe://zt.lab/svc/b")) as e2:
        material_from_response(
            m.key, auth.chain_pem(m.leaf).decode(), auth.bundle_pem().decode(), "spiffe://zt.lab/svc/b"
        )
    assert e1.value.permanent and e2.value.permanent  # the RA's fault; retrying cannot help
    csr = build_csr(m.key, SID)
    assert csr.is_signature_valid


def test_all_key_types_round_trip_through_writer(tmp_path: Path) -> None:
    auth = authority(tmp_path)
    for kind in KeyType:
        out = tmp_path / kind.value
        CertDirWriter(out).write(issue(auth, kind))
        assert read_current(out) is not None


def test_every_generation_carries_the_bundle_checksum_in_sha256sum_format(tmp_path: Path) -> None:
    """CONTRACT B: gen-*/bundle.pem.sha256 is `<hex>  bundle.pem\\n` (0644) of the bundle.pem
    beside it, `sha256sum -c` accepts it, and DIR/bundle.pem.sha256 follows `current`."""
    import hashlib
    import re
    import shutil
    import subprocess

    auth = authority(tmp_path)
    out = tmp_path / "out"
    w = CertDirWriter(out)
    for _ in range(2):
        gen = w.write(issue(auth))
        gdir = out / gen
        line = (gdir / "bundle.pem.sha256").read_text()
        assert re.fullmatch(r"[0-9a-f]{64}  bundle\.pem\n", line), line
        assert line.split()[0] == hashlib.sha256((gdir / "bundle.pem").read_bytes()).hexdigest()
        assert oct(os.stat(gdir / "bundle.pem.sha256").st_mode & 0o777) == "0o644"
        assert os.readlink(out / "bundle.pem.sha256") == "current/bundle.pem.sha256"
        assert (out / "bundle.pem.sha256").read_text() == line
    sha256sum = shutil.which("sha256sum")
    assert sha256sum is not None
    ok = subprocess.run([sha256sum, "-c", "bundle.pem.sha256"], cwd=out / "current", capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # An edited bundle no longer matches: what a service's check catches.
    gdir = (out / "current").resolve()
    (gdir / "bundle.pem").chmod(0o644)
    (gdir / "bundle.pem").write_bytes((gdir / "bundle.pem").read_bytes() + b"\n")
    bad = subprocess.run([sha256sum, "-c", "bundle.pem.sha256"], cwd=gdir, capture_output=True, text=True)
    assert bad.returncode != 0 and "FAILED" in bad.stdout


def test_current_has_bundle_checksum_tells_old_generations_apart(tmp_path: Path) -> None:
    from zt.agent.writer import current_has_bundle_checksum

    auth = authority(tmp_path)
    out = tmp_path / "out"
    assert not current_has_bundle_checksum(out)
    CertDirWriter(out).write(issue(auth))
    assert current_has_bundle_checksum(out)
    ((out / "current").resolve() / "bundle.pem.sha256").unlink()
    assert not current_has_bundle_checksum(out)
