"""zt-crl as a relying party sees it: real processes, DER and PEM, ETag, Cache-Control,
re-issue before nextUpdate, and openssl's own CRL check."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from tests.conftest import CaDir, CrlServer, make_ca, start_crl, start_ra
from zt.lab import process
from zt.lab.ports import free_port


def crl_number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_serves_der_and_pem_with_etag_and_cache_control(ca: CaDir, crl_server: CrlServer) -> None:
    r = httpx.get(crl_server.url + "/crl")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(r.content)
    inter = x509.load_pem_x509_certificate(ca.paths.intermediate_cert.read_bytes())
    assert crl.is_signature_valid(inter.public_key())  # type: ignore[arg-type]
    assert crl.issuer == inter.subject
    etag = r.headers["etag"]
    cc = r.headers["cache-control"]
    max_age = int(cc.split("max-age=")[1].split(",")[0])
    assert crl.next_update_utc is not None
    assert 0 <= max_age <= (crl.next_update_utc.timestamp() - time.time()) + 1
    again = httpx.get(crl_server.url + "/crl", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    pem = httpx.get(crl_server.url + "/crl.pem")
    assert pem.headers["content-type"] == "application/x-pem-file"
    assert x509.load_pem_x509_crl(pem.content) == crl
    assert httpx.get(crl_server.url + "/healthz").json()["status"] == "ok"
    page = httpx.get(crl_server.url + "/metrics").text
    assert "zt_crl_requests_total" in page
    assert "_created" not in page  # only docs/metrics.md's series, no prometheus-client extras


def test_revocation_shows_up_at_once_with_new_etag(ca: CaDir, crl_server: CrlServer, tmp_path: Path) -> None:
    ca.register("svc")
    serial = ca.ztca("issue", "svc", "--out", str(tmp_path / "o"), "--json").json()["serial"]
    before = httpx.get(crl_server.url + "/crl")
    assert ca.ztca("revoke", serial).code == 0
    after = httpx.get(crl_server.url + "/crl", headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200
    crl = x509.load_der_x509_crl(after.content)
    assert crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None
    assert crl_number(crl) > crl_number(x509.load_der_x509_crl(before.content))


def test_openssl_crl_check_refuses_revoked_and_accepts_good(ca: CaDir, crl_server: CrlServer, tmp_path: Path) -> None:
    ca.register("good")
    ca.register("bad")
    ca.ztca("issue", "good", "--out", str(tmp_path / "good"))
    serial = ca.ztca("issue", "bad", "--out", str(tmp_path / "bad"), "--json").json()["serial"]
    ca.ztca("revoke", serial, "--reason", "key-compromise")
    (tmp_path / "crl.pem").write_bytes(httpx.get(crl_server.url + "/crl.pem").content)

    def verify(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "openssl",
                "verify",
                "-crl_check",
                "-CRLfile",
                str(tmp_path / "crl.pem"),
                "-CAfile",
                str(ca.paths.bundle),
                "-untrusted",
                str(ca.paths.intermediate_cert),
                str(tmp_path / name / "cert.pem"),
            ],
            capture_output=True,
            text=True,
        )

    good, bad = verify("good"), verify("bad")
    assert good.returncode == 0, good.stdout + good.stderr
    assert bad.returncode != 0 and "certificate revoked" in bad.stdout + bad.stderr


def test_ra_reissues_crl_before_next_update_without_revocations(tmp_path: Path) -> None:
    ca = make_ca(tmp_path, "--crl-validity", "4s")
    logs = tmp_path / "logs"
    ra = start_ra(ca, logs)  # first: it keeps the 4 s CRL fresh, or zt-crl's /healthz may see it stale
    try:
        crl = start_crl(ca, logs)
        try:
            check_reissue(crl)
        finally:
            crl.proc.stop()
    finally:
        ra.proc.stop()


def check_reissue(crl: CrlServer) -> None:
    first = x509.load_der_x509_crl(httpx.get(crl.url + "/crl").content)
    seen: list[x509.CertificateRevocationList] = []

    def newer() -> bool:
        c = x509.load_der_x509_crl(httpx.get(crl.url + "/crl").content)
        if crl_number(c) > crl_number(first):
            seen.append(c)
            return True
        return False

    process.wait_until("a re-issued CRL", newer, timeout=10)
    assert first.next_update_utc is not None
    assert seen[0].next_update_utc is not None
    assert seen[0].last_update_utc < first.next_update_utc  # issued before the old one lapsed
    assert seen[0].next_update_utc > first.next_update_utc
    assert httpx.get(crl.url + "/healthz").status_code == 200


def test_no_crl_yet_is_503_not_500(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    (ca.paths.crl_der).unlink()
    logs = tmp_path / "logs"
    port = free_port()
    proc = process.start(
        "zt-crl",
        [sys.executable, "-m", "zt.crl.main", "--ca-dir", str(ca.dir), "--listen", f"127.0.0.1:{port}"],
        logs / "crl.log",
    )
    try:
        process.wait_until(
            "zt-crl answering", lambda: httpx.get(f"http://127.0.0.1:{port}/crl").status_code == 503, proc=proc
        )
        r = httpx.get(f"http://127.0.0.1:{port}/crl")
        assert r.json()["error"] == "unavailable"
    finally:
        proc.stop()


def crl_without_number(ca: CaDir) -> bytes:
    """A CRL signed by the real intermediate, valid in every way but without a CRL number."""
    key = serialization.load_pem_private_key(ca.paths.intermediate_key.read_bytes(), None)
    inter = x509.load_pem_x509_certificate(ca.paths.intermediate_cert.read_bytes())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(inter.subject)
        .last_update(now - dt.timedelta(minutes=1))
        .next_update(now + dt.timedelta(hours=1))
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)  # type: ignore[arg-type]


def publish(ca: CaDir, der: bytes) -> None:
    """As the CA side does: a new file renamed over crl.der."""
    tmp = ca.paths.crl_der.with_suffix(".tmp")
    tmp.write_bytes(der)
    os.replace(tmp, ca.paths.crl_der)


@pytest.mark.parametrize("bad, reason", [("no-crl-number", "no CRL number"), ("not-a-crl", "not a DER CRL")])
def test_bad_crl_file_is_refused_and_the_last_good_one_served(
    ca: CaDir, crl_server: CrlServer, bad: str, reason: str, tmp_path: Path
) -> None:
    good = httpx.get(crl_server.url + "/crl")
    assert good.status_code == 200
    publish(ca, crl_without_number(ca) if bad == "no-crl-number" else b"\x30\x03garbage")
    for path in ("/crl", "/crl.pem"):
        r = httpx.get(crl_server.url + path)
        assert r.status_code == 200, r.text
    assert httpx.get(crl_server.url + "/crl").content == good.content
    health = httpx.get(crl_server.url + "/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "degraded" and reason in health.json()["problem"], health.json()
    assert "zt_crl_refused_total 1.0" in httpx.get(crl_server.url + "/metrics").text
    ca.register("svc")
    serial = ca.ztca("issue", "svc", "--out", str(tmp_path / "svc"), "--json").json()["serial"]
    assert ca.ztca("revoke", serial).code == 0  # the CA side publishes a good CRL again
    fresh = httpx.get(crl_server.url + "/healthz").json()
    assert fresh["status"] == "ok" and "problem" not in fresh
    assert crl_number(x509.load_der_x509_crl(httpx.get(crl_server.url + "/crl").content)) > crl_number(
        x509.load_der_x509_crl(good.content)
    )


def test_crl_without_number_at_start_is_503_with_the_reason_not_500(ca: CaDir, tmp_path: Path) -> None:
    publish(ca, crl_without_number(ca))
    port = free_port()
    proc = process.start(
        "zt-crl",
        [sys.executable, "-m", "zt.crl.main", "--ca-dir", str(ca.dir), "--listen", f"127.0.0.1:{port}"],
        tmp_path / "logs" / "crl.log",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        process.wait_until("zt-crl answering", lambda: httpx.get(url + "/healthz").status_code == 503, proc=proc)
        health = httpx.get(url + "/healthz").json()
        assert health["status"] == "unavailable" and "no CRL number extension" in health["reason"], health
        for path in ("/crl", "/crl.pem"):
            r = httpx.get(url + path)
            assert r.status_code == 503 and r.json()["error"] == "unavailable", r.text
            assert "no CRL number extension" in r.json()["reason"]
    finally:
        proc.stop()
    assert '"event":"crl_refused"' in (tmp_path / "logs" / "crl.log").read_text()


@pytest.mark.parametrize(
    "method, path, status, code",
    [
        ("GET", "/docs", 404, "not_found"),
        ("GET", "/redoc", 404, "not_found"),
        ("GET", "/openapi.json", 404, "not_found"),
        ("GET", "/crl/", 404, "not_found"),
        ("GET", "/nope", 404, "not_found"),
        ("POST", "/crl", 405, "method_not_allowed"),
    ],
)
def test_publisher_serves_only_its_endpoints(
    crl_server: CrlServer, method: str, path: str, status: int, code: str
) -> None:
    r = httpx.request(method, crl_server.url + path, headers={"Host": "evil.example"})
    assert r.status_code == status, r.text
    assert "location" not in r.headers  # no redirect built from the client's Host header
    assert r.headers["content-type"] == "application/json" and r.json()["error"] == code
    if status == 405:  # RFC 9110 15.5.6: a 405 names the methods the resource has
        assert "GET" in r.headers.get("allow", "").split(", "), r.headers
