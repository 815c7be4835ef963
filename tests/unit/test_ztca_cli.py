"""The admin CLI, in-process: register, issue, revoke, list, status, and their bad input."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509

from tests.conftest import CaDir, run_ztca
from zt.ra.store import Store
from zt.ra.tokens import token_hash


def test_register_prints_token_once_and_stores_only_its_hash(ca: CaDir) -> None:
    r = ca.ztca("register", "service-a", "--json")
    assert r.code == 0
    doc = r.json()
    assert doc["spiffe_id"] == "spiffe://zt.lab/svc/service-a"
    assert doc["token"].startswith("ztb_")
    raw = b"".join(p.read_bytes() for p in ca.dir.glob("zt.db*"))  # the database and its WAL
    assert doc["token"].encode() not in raw
    hashes = [r[0] for r in Store(ca.paths.store).read().execute("SELECT hash FROM tokens")]
    assert hashes == [token_hash(doc["token"])]


def test_register_token_file_is_0600(ca: CaDir, tmp_path: Path) -> None:
    f = tmp_path / "tok"
    assert ca.ztca("register", "svc", "--token-file", str(f)).code == 0
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    assert f.read_text().startswith("ztb_")


@pytest.mark.parametrize("name", ["../etc", "a/b", "", "a b", "x" * 65])
def test_register_rejects_unsafe_service_names(ca: CaDir, name: str) -> None:
    r = ca.ztca("register", name)
    assert r.code == 1
    assert "invalid service name" in r.err
    assert Store(ca.paths.store).identities() == []


def test_issue_writes_agent_layout_for_registered_service_only(ca: CaDir, tmp_path: Path) -> None:
    r = ca.ztca("issue", "nobody", "--out", str(tmp_path / "x"))
    assert r.code == 1 and "not registered" in r.err
    ca.register("svc")
    out = tmp_path / "svc"
    r = ca.ztca("issue", "svc", "--out", str(out), "--ttl", "10m", "--json")
    assert r.code == 0, r.err
    assert (out / "current").is_symlink()
    for f in (
        "key.pem",
        "cert.pem",
        "chain.pem",
        "bundle.pem",
        "keystore.p12",
        "truststore.p12",
        "svid.json",
        "crl.pem",
    ):
        assert (out / f).exists(), f
    assert stat.S_IMODE(os.stat(out / "current" / "key.pem").st_mode) == 0o600
    leaf = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
    assert format(leaf.serial_number, "x") == r.json()["serial"]


def test_revoke_by_serial_and_service_publishes_new_crl(ca: CaDir, tmp_path: Path) -> None:
    ca.register("svc")
    serials = []
    for i in range(2):
        r = ca.ztca("issue", "svc", "--out", str(tmp_path / f"o{i}"), "--json")
        serials.append(r.json()["serial"])
    crl0 = x509.load_der_x509_crl(ca.paths.crl_der.read_bytes())
    r = ca.ztca("revoke", serials[0].upper(), "--reason", "key-compromise", "--json")
    assert r.code == 0, r.err
    assert r.json()["revoked"] == [serials[0]]
    crl1 = x509.load_der_x509_crl(ca.paths.crl_der.read_bytes())
    assert r.json()["crl_number"] > crl0.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert crl1.get_revoked_certificate_by_serial_number(int(serials[0], 16)) is not None
    r = ca.ztca("revoke", "--service", "svc", "--json")
    assert r.json()["revoked"] == [serials[1]]
    listed = ca.ztca("list", "--json").json()
    assert all(c["revoked"] for c in listed["certificates"])


@pytest.mark.parametrize(
    "argv, code, words",
    [
        (("revoke", "zz-not-hex"), 2, "not hexadecimal"),
        (("revoke", "abcdef"), 1, "no certificate with serial"),
        (("revoke", "--service", "ghost"), 1, "not registered"),
        (("revoke",), 2, "give a serial or --service"),
        (("revoke", "ab", "--reason", "bored"), 2, "unknown revocation reason"),
    ],
)
def test_revoke_bad_input_gets_clear_error(ca: CaDir, argv: tuple[str, ...], code: int, words: str) -> None:
    r = ca.ztca(*argv)
    assert r.code == code
    assert words in r.err


@pytest.mark.parametrize(
    "argv, words",
    [
        (("revoke", "--service", "svc", "--reason", "bored"), "unknown revocation reason"),
        (("revoke", "ab", "--service", "svc"), "give a serial or --service"),
        (("issue", "svc", "--ttl", "10s"), "--ttl must be at least 30s"),
        (("issue", "svc", "--ttl", "2h"), "--allow-long-ttl"),
        (("issue", "svc", "--ttl", "soon"), "invalid"),
        (("register", "svc", "--ttl", "forever"), "invalid"),
        (("no-such-verb",), "invalid choice"),
    ],
)
def test_ztca_usage_error_exits_2_with_one_line(ca: CaDir, argv: tuple[str, ...], words: str) -> None:
    """Usage errors exit 2 with a message, like the daemons; operational failures exit 1."""
    ca.register("svc")
    r = ca.ztca(*argv)
    assert r.code == 2, r
    assert words in r.err
    assert r.out == ""


def test_init_bad_trust_domain_is_a_usage_error(tmp_path: Path) -> None:
    r = run_ztca("init", "--dir", str(tmp_path / "x"), "--trust-domain", "Bad Domain")
    assert r.code == 2 and "invalid trust domain" in r.err
    assert len(r.err.strip().splitlines()) == 1


def test_issue_respects_the_maximum_leaf_lifetime_unless_told(ca: CaDir, tmp_path: Path) -> None:
    ca.register("svc")
    r = ca.ztca("issue", "svc", "--out", str(tmp_path / "o"), "--ttl", "25h")
    assert r.code == 2 and "longer than the RA's maximum leaf lifetime" in r.err
    assert [c for c in ca.ztca("list", "--json").json()["certificates"] if c["identity"] == "svc"] == []
    r = ca.ztca("issue", "svc", "--out", str(tmp_path / "o"), "--ttl", "25h", "--allow-long-ttl", "--json")
    assert r.code == 0, r.err
    not_after = dt.datetime.fromisoformat(r.json()["not_after"].replace("Z", "+00:00"))
    assert not_after - dt.datetime.now(dt.UTC) > dt.timedelta(hours=24)


def test_list_and_status_show_table_and_json(ca: CaDir, tmp_path: Path) -> None:
    ca.register("svc")
    ca.ztca("issue", "svc", "--out", str(tmp_path / "o"))
    text = ca.ztca("list")
    assert text.code == 0 and "spiffe://zt.lab/svc/svc" in text.out and "SERIAL" in text.out
    st = ca.ztca("status", "--json").json()
    assert st["identities"] == 1 and st["certificates"] == 1 and st["crl_number"] >= 1


def test_commands_on_missing_ca_fail_clearly(tmp_path: Path) -> None:
    from tests.conftest import run_ztca

    r = run_ztca("list", "--dir", str(tmp_path / "nope"))
    assert r.code == 1 and "ztca init" in r.err


def test_list_json_with_pem_includes_each_certificate(ca: CaDir, tmp_path: Path) -> None:
    ca.register("svc")
    serial = ca.ztca("issue", "svc", "--out", str(tmp_path / "o"), "--json").json()["serial"]
    rows = ca.ztca("list", "--json", "--pem").json()["certificates"]
    cert = x509.load_pem_x509_certificate(rows[0]["pem"].encode())
    assert format(cert.serial_number, "x") == serial == rows[0]["serial"]
    assert "pem" not in ca.ztca("list", "--json").json()["certificates"][0]


def test_bench_crl_puts_synthetic_revocations_in_force_beside_real_ones(ca: CaDir, tmp_path: Path) -> None:
    ca.register("svc")
    real = ca.ztca("issue", "svc", "--out", str(tmp_path / "o"), "--json").json()["serial"]
    assert ca.ztca("revoke", real).code == 0
    r = ca.ztca("bench-crl", "--entries", "500", "--json")
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["added"] == 500 and doc["crl_entries"] == 501
    crl = x509.load_der_x509_crl(ca.paths.crl_der.read_bytes())
    assert len(crl) == 501
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == doc["crl_number"]
    assert crl.get_revoked_certificate_by_serial_number(int(real, 16)) is not None
    # Never-issued serials: the certificate list (and so the validators) never sees them.
    assert [c["serial"] for c in ca.ztca("list", "--json").json()["certificates"]] == [real]
    again = ca.ztca("bench-crl", "--entries", "10", "--json").json()
    assert again["crl_entries"] == 511 and again["crl_number"] > doc["crl_number"]


@pytest.mark.parametrize(
    "argv, words",
    [
        (("bench-crl",), "--entries"),
        (("bench-crl", "--entries", "0"), "--entries must be between 1 and"),
        (("bench-crl", "--entries", "many"), "invalid int value"),
        (("bench-crl", "--entries", "5", "--lifetime", "0s"), "--lifetime must be positive"),
    ],
)
def test_bench_crl_bad_input_is_a_usage_error(ca: CaDir, argv: tuple[str, ...], words: str) -> None:
    r = ca.ztca(*argv)
    assert r.code == 2, r
    assert words in r.err
    assert len(x509.load_der_x509_crl(ca.paths.crl_der.read_bytes())) == 0
