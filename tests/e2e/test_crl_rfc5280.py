"""The CRLs our CA side publishes, judged against RFC 5280 from outside: revoked through the real
RA (HTTPS, admin token) and through `ztca`, every CRL's entries are dated no later than its
thisUpdate (5.1.2.4, 5.1.2.6; the defect of issue 11), and pkilint's CRL linter plus that rule
(`zt.lab.validators.lint_crl`) finds nothing, with and without entries. Negative twins: a CRL
built the old way (thisUpdate backdated past a fresh revocation) and one pkilint objects to
are reported, with the reason."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from tests.conftest import CaDir, RaServer
from zt.lab.validators import lint_crl


def published(ca: CaDir) -> tuple[bytes, x509.CertificateRevocationList]:
    der = ca.paths.crl_der.read_bytes()
    return der, x509.load_der_x509_crl(der)


def assert_entries_not_after_this_update(crl: x509.CertificateRevocationList) -> None:
    for entry in crl:
        assert entry.revocation_date_utc <= crl.last_update_utc, (
            f"serial {entry.serial_number:x} revoked at {entry.revocation_date_utc}, "
            f"after the CRL's thisUpdate {crl.last_update_utc}"
        )


def issue(ca: CaDir, service: str, out: Path) -> str:
    r = ca.ztca("issue", service, "--out", str(out / service), "--json")
    assert r.code == 0, r.err
    return str(r.json()["serial"])


def test_crls_published_at_revocations_list_no_entry_after_this_update(ra: RaServer, tmp_path: Path) -> None:
    ca = ra.ca
    for name in ("a", "b", "c"):
        ca.register(name)
    serials = {name: issue(ca, name, tmp_path) for name in ("a", "b", "c")}
    issue(ca, "c", tmp_path / "second")

    empty_der, empty = published(ca)
    assert len(empty) == 0
    assert lint_crl(empty_der) == "ok"
    # With nothing listed, thisUpdate keeps its backdate for relying parties' clock skew.
    assert empty.last_update_utc <= dt.datetime.now(dt.UTC) - dt.timedelta(seconds=25)

    with ra.client() as client:  # 1: through the RA's HTTPS API
        before = time.time()
        r = client.post(
            "/v1/revoke",
            json={"serial": serials["a"], "reason": "key-compromise"},
            headers={"Authorization": f"Bearer {ca.admin_token()}"},
        )
        assert r.status_code == 200, r.text
        der, crl = published(ca)
        assert crl.last_update_utc.timestamp() >= int(before)  # raised to the fresh revocation
        assert crl.last_update_utc <= dt.datetime.now(dt.UTC)  # and never ahead of the clock
        assert_entries_not_after_this_update(crl)
        assert lint_crl(der) == "ok"
    assert ca.ztca("revoke", serials["b"]).code == 0  # 2: ztca, one serial, no reason
    der, crl = published(ca)
    assert_entries_not_after_this_update(crl)
    assert lint_crl(der) == "ok"
    assert ca.ztca("revoke", "--service", "c", "--reason", "cessation-of-operation").code == 0  # 3: a service
    der, crl = published(ca)
    assert len(crl) == 4, [e.serial_number for e in crl]  # a, b and both of c's
    assert_entries_not_after_this_update(crl)
    assert lint_crl(der) == "ok"


def test_lint_crl_reports_an_entry_dated_after_this_update(ca: CaDir) -> None:
    """The defect as it was: thisUpdate backdated 30 s, the revocation recorded at now."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    der = signed_by_intermediate(ca, this_update=now - dt.timedelta(seconds=30), revoked_at=now)
    report = lint_crl(der)
    assert report.startswith("zt.crl_revocation_date_after_this_update (ERROR): serial 2a revoked at"), report


def test_lint_crl_reports_what_pkilint_finds(ca: CaDir) -> None:
    """A CRL without the CRL number extension (RFC 5280 5.2.3: conforming CAs MUST include it)."""
    now = dt.datetime.now(dt.UTC)
    der = signed_by_intermediate(ca, this_update=now, revoked_at=now, with_number=False)
    report = lint_crl(der)
    assert report == "pkix.crl_number_missing (ERROR) at certificateList", report


@pytest.mark.parametrize("der", [b"\x30\x03garbage", b"not DER at all"])
def test_lint_crl_reports_a_file_that_is_not_a_crl(der: bytes) -> None:
    assert lint_crl(der).startswith("pkilint could not load the CRL: "), lint_crl(der)


def signed_by_intermediate(
    ca: CaDir, *, this_update: dt.datetime, revoked_at: dt.datetime, with_number: bool = True
) -> bytes:
    """A CRL built with `cryptography` directly (our signer raises thisUpdate to the latest
    revocation date, so it cannot make the defect) and signed by the real intermediate."""
    key = serialization.load_pem_private_key(ca.paths.intermediate_key.read_bytes(), None)
    inter = x509.load_pem_x509_certificate(ca.paths.intermediate_cert.read_bytes())
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(inter.subject)
        .last_update(this_update)
        .next_update(this_update + dt.timedelta(hours=1))
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)  # type: ignore[arg-type]
        .add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(42).revocation_date(revoked_at).build())
    )
    if with_number:
        builder = builder.add_extension(x509.CRLNumber(99), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)  # type: ignore[arg-type]
