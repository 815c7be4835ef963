"""`ztca init` and the CA's certificate profiles: modes, constraints, caps, serials."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import make_ca, run_ztca
from zt.ca.authority import Authority
from zt.ca.layout import CaPaths
from zt.clock import utcnow
from zt.spiffe import workload_id


def mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_init_writes_keys_0600_and_bundle_read_only(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    p = ca.paths
    assert not p.root_key.exists() and not p.root_key_encrypted.exists()  # the root key is not kept online
    assert mode(p.intermediate_key) == 0o600
    assert mode(p.admin_token) == 0o600
    assert mode(p.bundle) == 0o444
    assert mode(p.bundle_sha256) == 0o444
    assert mode(p.dir) == 0o700
    assert mode(p.store) == 0o600


def test_init_keys_are_never_world_readable_even_with_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        ca = make_ca(tmp_path, "--root-key-out", str(tmp_path / "root.key"))
    finally:
        os.umask(old)
    assert mode(tmp_path / "root.key") == 0o600
    assert mode(ca.paths.intermediate_key) == 0o600


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    before = ca.paths.root_cert.read_bytes()
    r = run_ztca("init", "--dir", str(ca.dir))
    assert r.code == 1
    assert "already exists" in r.err and "--force" in r.err
    assert ca.paths.root_cert.read_bytes() == before
    r = run_ztca("init", "--dir", str(ca.dir), "--force")
    assert r.code == 0
    assert ca.paths.root_cert.read_bytes() != before


def test_init_rejects_bad_trust_domain(tmp_path: Path) -> None:
    r = run_ztca("init", "--dir", str(tmp_path / "x"), "--trust-domain", "Bad Domain")
    assert r.code == 2 and "invalid trust domain" in r.err
    assert not (tmp_path / "x" / "root.key").exists()


def test_bundle_digest_matches_sha256sum_format(tmp_path: Path) -> None:
    import hashlib

    ca = make_ca(tmp_path)
    digest, name = ca.paths.bundle_sha256.read_text().split()
    assert name == "bundle.pem"
    assert digest == hashlib.sha256(ca.paths.bundle.read_bytes()).hexdigest()


def test_intermediate_is_name_constrained_with_path_length_zero(tmp_path: Path) -> None:
    ca = make_ca(tmp_path, "--trust-domain", "example.org")
    inter = x509.load_pem_x509_certificate(ca.paths.intermediate_cert.read_bytes())
    root = x509.load_pem_x509_certificate(ca.paths.root_cert.read_bytes())
    bc = inter.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    nc = inter.extensions.get_extension_for_class(x509.NameConstraints)
    assert nc.critical
    assert nc.value.permitted_subtrees == [x509.UniformResourceIdentifier("example.org")]
    inter.verify_directly_issued_by(root)
    assert inter.not_valid_after_utc <= root.not_valid_after_utc


def test_leaf_never_outlives_the_intermediate(tmp_path: Path) -> None:
    ca = make_ca(tmp_path, "--intermediate-ttl", "2h")
    auth = Authority.load(CaPaths(ca.dir), "zt.lab")
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = auth.sign_leaf(key.public_key(), workload_id("zt.lab", "a"), dt.timedelta(days=30), utcnow(), None)
    assert leaf.not_valid_after_utc == auth.not_after


def test_serials_are_random_and_at_least_64_bits(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    auth = Authority.load(CaPaths(ca.dir), "zt.lab")
    key = ec.generate_private_key(ec.SECP256R1())
    serials = {
        auth.sign_leaf(
            key.public_key(), workload_id("zt.lab", "a"), dt.timedelta(hours=1), utcnow(), None
        ).serial_number
        for _ in range(50)
    }
    assert len(serials) == 50
    assert all(s.bit_length() >= 64 for s in serials)


def test_leaf_carries_crl_distribution_point(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    ca.register("svc")
    assert ca.ztca("issue", "svc", "--out", str(tmp_path / "o")).code == 0
    leaf = x509.load_pem_x509_certificate((tmp_path / "o" / "cert.pem").read_bytes())
    cdp = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name == [x509.UniformResourceIdentifier(f"http://127.0.0.1:{ca.crl_port}/crl")]


# -- the root key stays offline (issue 9, "Root key online") -----------------------------------


def _no_secret_printed(r: object) -> None:
    text = getattr(r, "out", "") + getattr(r, "err", "")
    assert "PRIVATE KEY" not in text


def test_init_root_key_out_writes_it_outside_the_ca_dir_0600(tmp_path: Path) -> None:
    out = tmp_path / "offline" / "root.key"
    out.parent.mkdir()
    r = run_ztca("init", "--dir", str(tmp_path / "ca"), "--root-key-out", str(out))
    assert r.code == 0, r.err
    _no_secret_printed(r)
    assert mode(out) == 0o600
    root = x509.load_pem_x509_certificate((tmp_path / "ca" / "root.pem").read_bytes())
    key = serialization.load_pem_private_key(out.read_bytes(), password=None)
    assert key.public_key() == root.public_key()
    assert not any("PRIVATE KEY" in p.read_text(errors="ignore") for p in (tmp_path / "ca").glob("root*"))


@pytest.mark.parametrize(
    "where, words",
    [
        ("inside", "inside the CA directory"),
        ("exists", "exists; refusing to overwrite"),
    ],
)
def test_init_root_key_out_refuses_unsafe_paths(tmp_path: Path, where: str, words: str) -> None:
    ca_dir = tmp_path / "ca"
    if where == "inside":
        out = ca_dir / "root.key"
    else:
        out = tmp_path / "root.key"
        out.write_text("keep me")
    r = run_ztca("init", "--dir", str(ca_dir), "--root-key-out", str(out))
    assert r.code == 2 and words in r.err
    assert not (ca_dir / "intermediate.key").exists()
    if where == "exists":
        assert out.read_text() == "keep me"


def test_init_root_key_passphrase_keeps_it_encrypted(tmp_path: Path) -> None:
    phrase = tmp_path / "phrase"
    phrase.write_text("correct horse battery staple\n")
    r = run_ztca("init", "--dir", str(tmp_path / "ca"), "--root-key-passphrase-file", str(phrase), "--json")
    assert r.code == 0, r.err
    _no_secret_printed(r)
    assert "correct horse" not in r.out
    enc = CaPaths(tmp_path / "ca").root_key_encrypted
    assert mode(enc) == 0o600 and b"ENCRYPTED PRIVATE KEY" in enc.read_bytes()
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(enc.read_bytes(), password=None)
    key = serialization.load_pem_private_key(enc.read_bytes(), password=b"correct horse battery staple")
    root = x509.load_pem_x509_certificate(CaPaths(tmp_path / "ca").root_cert.read_bytes())
    assert key.public_key() == root.public_key()


def test_rotate_intermediate_with_offline_root_key_keeps_old_leaves_valid(tmp_path: Path) -> None:
    out = tmp_path / "root.key"
    ca = make_ca(tmp_path, "--root-key-out", str(out))
    ca.register("svc")
    assert ca.ztca("issue", "svc", "--out", str(tmp_path / "o")).code == 0
    old_inter = x509.load_pem_x509_certificate(ca.paths.intermediate_cert.read_bytes())
    r = ca.ztca("rotate-intermediate", "--root-key", str(out), "--json")
    assert r.code == 0, r.err
    _no_secret_printed(r)
    new_inter = x509.load_pem_x509_certificate(ca.paths.intermediate_cert.read_bytes())
    assert new_inter.public_key() != old_inter.public_key()
    root = x509.load_pem_x509_certificate(ca.paths.root_cert.read_bytes())
    new_inter.verify_directly_issued_by(root)
    Authority.load(ca.paths, "zt.lab")  # key and certificate match
    assert ca.ztca("issue", "svc", "--out", str(tmp_path / "o2")).code == 0


def test_rotate_intermediate_refuses_a_key_that_is_not_the_roots(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    other = make_ca(tmp_path / "other", "--root-key-out", str(tmp_path / "other.key"))
    before = ca.paths.intermediate_cert.read_bytes()
    r = ca.ztca("rotate-intermediate", "--root-key", str(tmp_path / "other.key"))
    assert r.code == 1 and "does not belong to" in r.err
    assert ca.paths.intermediate_cert.read_bytes() == before
    assert other.paths.dir != ca.paths.dir
