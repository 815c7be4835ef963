"""What the agent trusts: exactly the pinned roots on the wire, and only verified chains on disk."""

from __future__ import annotations

import datetime as dt
import ssl
import time
from pathlib import Path

import pytest
from cryptography import x509

from tests.conftest import make_ca
from zt.agent.material import material_from_response
from zt.agent.ra_client import RaClient
from zt.agent.trust import read_pinned_bundle, tls_context, verify_svid
from zt.ca.authority import Authority
from zt.ca.layout import CaPaths
from zt.errors import ConfigError, SvidError
from zt.pki.encoding import pem
from zt.pki.keys import PrivateKey, generate_key
from zt.spiffe import workload_id

SID = "spiffe://zt.lab/svc/a"
SYSTEM_STORE = Path("/etc/ssl/certs/ca-certificates.crt")


def authority(tmp_path: Path, name: str = "ca") -> Authority:
    return Authority.load(CaPaths(make_ca(tmp_path / name).dir), "zt.lab")


def leaf(
    auth: Authority, key: PrivateKey, *, service: str = "a", lifetime: dt.timedelta = dt.timedelta(hours=1)
) -> x509.Certificate:
    return auth.sign_leaf(key.public_key(), workload_id("zt.lab", service), lifetime, dt.datetime.now(dt.UTC), None)


def test_tls_context_holds_exactly_the_pinned_roots_whatever_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = authority(tmp_path)
    if SYSTEM_STORE.exists():
        monkeypatch.setenv("SSL_CERT_FILE", str(SYSTEM_STORE))
        monkeypatch.setenv("SSL_CERT_DIR", str(SYSTEM_STORE.parent))
        assert len(ssl.create_default_context().get_ca_certs()) > 1  # what the agent used to hold
    client = RaClient("https://127.0.0.1:1", auth.roots)
    try:
        held = client.tls.get_ca_certs(binary_form=True)
    finally:
        client.close()
    assert [x509.load_der_x509_certificate(c) for c in held] == list(auth.roots)
    ctx = tls_context(auth.roots)
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_pinned_bundle_with_wrong_checksum_is_refused(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    assert read_pinned_bundle(ca.paths.bundle, ca.paths.bundle_sha256.read_text()).roots
    with pytest.raises(ConfigError, match="refusing to trust it"):
        read_pinned_bundle(ca.paths.bundle, "ab" * 32)


@pytest.mark.parametrize(
    "case, reason",
    [
        ("foreign_ca", "does not verify against the pinned trust bundle"),
        ("no_intermediate", "unable to get local issuer certificate"),
        ("expired", "certificate has expired"),
        ("other_key", "another key"),
        ("other_id", "we asked for spiffe://zt.lab/svc/a"),
    ],
)
def test_verify_svid_refuses(tmp_path: Path, case: str, reason: str) -> None:
    auth = authority(tmp_path)
    key = generate_key()
    chain = [leaf(auth, key), auth.certificate]
    if case == "foreign_ca":
        other = authority(tmp_path, "other")  # same trust domain name, other keys
        chain = [leaf(other, key), other.certificate]
    elif case == "no_intermediate":
        chain = chain[:1]
    elif case == "expired":
        chain[0] = leaf(auth, key, lifetime=dt.timedelta(seconds=1))  # the CA is too new to backdate into
        time.sleep(1.5)
    elif case == "other_key":
        key = generate_key()
    elif case == "other_id":
        chain[0] = leaf(auth, key, service="b")
    with pytest.raises(SvidError, match=reason):
        verify_svid(key, chain, auth.roots, SID)


def test_verify_svid_accepts_a_chain_to_the_pinned_roots(tmp_path: Path) -> None:
    auth = authority(tmp_path)
    key = generate_key()
    verify_svid(key, [leaf(auth, key), auth.certificate], auth.roots, SID)


def test_material_carries_the_pinned_roots_not_the_offered_bundle(tmp_path: Path) -> None:
    auth = authority(tmp_path)
    other = authority(tmp_path, "other")
    key = generate_key()
    offered = (auth.bundle_pem() + other.bundle_pem()).decode()
    m = material_from_response(key, auth.chain_pem(leaf(auth, key)).decode(), offered, SID, roots=auth.roots)
    assert [pem(c) for c in m.bundle] == [pem(c) for c in auth.roots]
