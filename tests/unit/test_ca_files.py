"""`ztca init` and the CA's certificate profiles: modes, constraints, caps, serials."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

from cryptography import x509
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
    assert mode(p.root_key) == 0o600
    assert mode(p.intermediate_key) == 0o600
    assert mode(p.admin_token) == 0o600
    assert mode(p.bundle) == 0o444
    assert mode(p.bundle_sha256) == 0o444
    assert mode(p.dir) == 0o700
    assert mode(p.store) == 0o600


def test_init_keys_are_never_world_readable_even_with_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        ca = make_ca(tmp_path)
    finally:
        os.umask(old)
    assert mode(ca.paths.root_key) == 0o600
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
    assert r.code == 1 and "invalid trust domain" in r.err
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
    serials = {auth.sign_leaf(key.public_key(), workload_id("zt.lab", "a"), dt.timedelta(hours=1), utcnow(),
                              None).serial_number for _ in range(50)}
    assert len(serials) == 50
    assert all(s.bit_length() >= 64 for s in serials)


def test_leaf_carries_crl_distribution_point(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    ca.register("svc")
    assert ca.ztca("issue", "svc", "--out", str(tmp_path / "o")).code == 0
    leaf = x509.load_pem_x509_certificate((tmp_path / "o" / "cert.pem").read_bytes())
    cdp = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name == [x509.UniformResourceIdentifier(f"http://127.0.0.1:{ca.crl_port}/crl")]
