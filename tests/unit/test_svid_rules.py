"""Our X509-SVID checker: one negative case per MUST in docs/svid-rules.md,
and our own CA's certificates pass it."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.unit.pki_vectors import build
from zt import svid

GOOD = "spiffe://zt.lab/svc/a"


def sections(findings: list[svid.Finding]) -> set[str]:
    return {f.section for f in findings}


def test_check_leaf_accepts_conformant_leaf() -> None:
    assert svid.check_leaf(build(uris=[GOOD])) == []


@pytest.mark.parametrize(
    "cert_kwargs, section, words",
    [
        ({"uris": [GOOD, "spiffe://zt.lab/svc/b"]}, "2", "exactly one URI SAN"),
        ({"uris": ["https://zt.lab/svc/a"]}, "2", "not a valid SPIFFE ID"),
        ({"uris": []}, "2", "URI SAN"),
        ({"uris": ["spiffe://zt.lab"]}, "3.1", "non-root path"),
        ({"uris": [GOOD], "empty_subject": True, "san_critical": False}, "3.1", "critical SAN"),
        ({"uris": [GOOD], "ca": True, "ku": {"digital_signature": True}}, "4.1", "cA=false"),
        ({"uris": [GOOD], "with_ku": False}, "4.3", "must be present"),
        ({"uris": [GOOD], "ku_critical": False}, "4.3", "critical"),
        ({"uris": [GOOD], "ku": {"digital_signature": False}}, "4.3", "digitalSignature"),
        ({"uris": [GOOD], "ku": {"key_cert_sign": True}}, "4.3", "keyCertSign"),
        ({"uris": [GOOD], "ku": {"crl_sign": True}}, "4.3", "cRLSign"),
        ({"uris": [GOOD], "eku": [ExtendedKeyUsageOID.SERVER_AUTH]}, "4.4", "clientAuth"),
        ({"uris": [GOOD], "eku": [ExtendedKeyUsageOID.CLIENT_AUTH]}, "4.4", "serverAuth"),
    ],
)
def test_check_leaf_finds_each_broken_rule(cert_kwargs: dict, section: str, words: str) -> None:  # type: ignore[type-arg]
    findings = svid.check_leaf(build(**cert_kwargs))
    assert any(f.section == section and words in f.rule for f in findings), findings


def test_check_ca_accepts_signing_cert_and_flags_each_rule() -> None:
    assert svid.check_ca(build(uris=["spiffe://zt.lab"], ca=True)) == []
    assert "3.2" in sections(svid.check_ca(build(uris=["spiffe://zt.lab/x"], ca=True)))
    assert "3.2" in sections(svid.check_ca(build(uris=["spiffe://zt.lab"], ca=False)))
    assert "3.2" in sections(svid.check_ca(build(uris=["spiffe://zt.lab"], ca=True, with_bc=False)))
    no_sign = build(uris=["spiffe://zt.lab"], ca=True, ku={"key_cert_sign": False})
    assert any(f.section == "4.3" and "keyCertSign" in f.rule for f in svid.check_ca(no_sign))


def test_spiffe_id_of_refuses_two_uris() -> None:
    from zt.errors import SvidError

    with pytest.raises(SvidError, match="exactly one URI SAN"):
        svid.spiffe_id_of(build(uris=[GOOD, GOOD + "2"]))
    assert str(svid.spiffe_id_of(build(uris=[GOOD]))) == GOOD


def test_our_ca_profiles_pass_the_checker(tmp_path) -> None:
    from tests.conftest import make_ca

    ca = make_ca(tmp_path)
    root = x509.load_pem_x509_certificate(ca.paths.root_cert.read_bytes())
    inter = x509.load_pem_x509_certificate(ca.paths.intermediate_cert.read_bytes())
    assert svid.check_ca(root) == []
    assert svid.check_ca(inter) == []
    assert ca.ztca("register", "svc1").code == 0
    r = ca.ztca("issue", "svc1", "--out", str(tmp_path / "out"), "--json")
    assert r.code == 0, r.err
    leaf = x509.load_pem_x509_certificate((tmp_path / "out" / "cert.pem").read_bytes())
    assert svid.check_leaf(leaf) == []
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= dt.timedelta(hours=1, seconds=30)
