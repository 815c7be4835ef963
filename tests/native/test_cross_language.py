"""service-a (C++) and service-b (Java) calling each other over mTLS with certificates from our
CA, and the negative twins, each asserted on the error both sides report: the client's TLS
alert or HTTP error, and the server's own count of handshake failures by reason."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import make_ca
from tests.native.pair import KINDS, TD, Pair, running_pair
from zt.lab import mtls_client, process
from zt.lab.identity import LabIdentity


# Per module, and so once per run (tests/native/pair.py).
@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with running_pair(tmp_path_factory.mktemp("xlang")) as p:
        yield p


def call(p: Pair, caller: str, callee: str, expect: str | None = None) -> mtls_client.Response:
    target = quote(p.services[callee].url + "/hello", safe="")
    path = f"/call?target={target}" + (f"&expect={quote(expect, safe='')}" if expect else "")
    return p.get(caller, path, p.ids["client"])


@pytest.mark.parametrize("caller, callee", [("service-a", "service-b"), ("service-b", "service-a")])
def test_service_calls_other_language_over_mtls(pair: Pair, caller: str, callee: str) -> None:
    r = call(pair, caller, callee)
    assert r.status == 200, r
    assert r.body["peer"] == TD + callee
    assert r.body["peer_serial"] == pair.ids[callee].serial
    answer = r.body["response"]
    assert answer["caller"] == TD + caller and answer["caller_serial"] == pair.ids[caller].serial
    assert answer["serial"] == pair.ids[callee].serial


@pytest.mark.parametrize("caller, callee", [("service-a", "service-b"), ("service-b", "service-a")])
def test_call_with_wrong_expected_identity_is_refused_by_caller(pair: Pair, caller: str, callee: str) -> None:
    r = call(pair, caller, callee, expect=TD + "someone-else")
    assert r.status == 502 and r.body["error"] == "peer_identity_mismatch", r
    assert TD + callee in r.body["reason"] and TD + "someone-else" in r.body["reason"]


# The alert each TLS stack sends for each refusal, as the client sees it. OpenSSL names the
# reason; the JDK sends bad_certificate / certificate_unknown for every other client-certificate
# refusal (its specific reason is in its log and metrics, checked below), but service-b sends
# certificate_revoked for a revoked client itself (native/java tls/RevokedAlert), as the
# contract asks of both services.
CLIENT_SEES = {
    ("service-a", "no_client_cert"): {"no_client_cert"},
    ("service-a", "untrusted"): {"untrusted"},
    ("service-a", "expired"): {"expired"},
    ("service-a", "revoked"): {"revoked"},
    ("service-b", "no_client_cert"): {"bad_certificate"},
    ("service-b", "untrusted"): {"certificate_unknown"},
    ("service-b", "expired"): {"certificate_unknown"},
    ("service-b", "revoked"): {"revoked"},
}


def refused(pair: Pair, service: str, identity: LabIdentity | None, reason: str) -> mtls_client.Response:
    """The client gets the TLS alert its server's stack sends, and the server counts the reason."""
    before = pair.failures(service, reason)
    r = pair.get(service, "/hello", identity)
    assert not r.ok, f"{service} accepted a request it must refuse: {r}"
    assert r.error == "tls_refused" and r.reason in CLIENT_SEES[(service, reason)], r
    process.wait_until(
        f"{service} to count a {reason} failure", lambda: pair.failures(service, reason) > before, timeout=5
    )
    return r


@pytest.mark.parametrize("service", KINDS)
def test_no_client_certificate_is_refused(pair: Pair, service: str) -> None:
    refused(pair, service, None, "no_client_cert")


@pytest.mark.parametrize("service", KINDS)
def test_certificate_from_another_ca_is_refused(pair: Pair, service: str, tmp_path: Path) -> None:
    other = make_ca(tmp_path)  # same trust domain name, unrelated root
    other.register("client")
    out = tmp_path / "impostor"
    assert other.ztca("issue", "client", "--out", str(out)).code == 0
    refused(pair, service, LabIdentity("client", TD + "client", out), "untrusted")


@pytest.mark.parametrize("service", KINDS)
def test_expired_certificate_is_refused(pair: Pair, service: str) -> None:
    name = f"expired-{service}"
    pair.ca.register(name)
    out = pair.tmp / "ids" / name
    pair.ca.issue_expired(name, out)
    refused(pair, service, LabIdentity(name, TD + name, out), "expired")


@pytest.mark.parametrize("service", KINDS)
def test_revoked_certificate_is_refused_once_crl_is_loaded(pair: Pair, service: str) -> None:
    name = f"revoked-{service}"
    victim = pair.identity(name)
    assert pair.get(service, "/hello", victim).status == 200  # valid before
    assert pair.ca.ztca("revoke", victim.serial, "--reason", "key-compromise").code == 0
    crl = pair.ca.paths.crl_pem.read_bytes()
    svc = pair.services[service]
    tmp = svc.cert_dir / ".crl.tmp"
    tmp.write_bytes(crl)
    os.replace(tmp, svc.cert_dir / "crl.pem")  # what the agent does
    os.kill(int(svc.pid_file.read_text()), signal.SIGHUP)  # and its signal (service-b also watches)
    process.wait_until(
        f"{service} to refuse the revoked certificate", lambda: not pair.get(service, "/hello", victim).ok, timeout=15
    )
    refused(pair, service, victim, "revoked")
    assert pair.get(service, "/hello", pair.ids["client"]).status == 200  # others unaffected


def test_logs_name_the_reason_on_the_server_side(pair: Pair) -> None:
    for service in KINDS:
        refused(pair, service, None, "no_client_cert")
        lines = [json.loads(x) for x in pair.services[service].proc.log_text().splitlines() if x.startswith("{")]
        rejected = [x for x in lines if x.get("event") == "handshake_rejected"]
        assert any(x.get("reason") == "no_client_cert" for x in rejected), rejected[-3:]
