"""The lab runtime: teardown after a failed bring-up, the one wait helper, and clients that
trust exactly the bundle they are given."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from zt.fsutil import write_secret
from zt.lab import core, mtls_client, process, services, validators
from zt.lab.ports import free_port
from zt.lab.process_runtime import ProcessRuntime
from zt.lab.topology import ServiceSpec, Topology


def test_failed_bring_up_stops_every_started_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = ServiceSpec("service-a", "cpp", "build/service-a", expect_peer="service-a", reload="signal")
    monkeypatch.setitem(services.BINARIES, "service-a", tmp_path / "no-such-binary")
    started: list[int] = []
    real_start = ProcessRuntime.start

    def spy(self: ProcessRuntime, topology: Topology, work_dir: Path):
        from zt.lab import process

        original = process.start

        def recording(*a, **kw):
            p = original(*a, **kw)
            started.append(p.pid)
            return p

        monkeypatch.setattr(process, "start", recording)
        return real_start(self, topology, work_dir)

    monkeypatch.setattr(ProcessRuntime, "start", spy)
    with pytest.raises(Exception, match="no-such-binary"):
        ProcessRuntime().start(Topology(services=(missing,)), tmp_path / "work")
    assert len(started) >= 3  # RA, CRL publisher, the agent
    for pid in started:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# -- the lab's clients trust exactly the bundle they are given, never the system store ------------


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _server_leaf(
    ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(minutes=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.UniformResourceIdentifier("spiffe://zt.lab/svc/ra"),
                ]
            ),
            critical=True,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def system_trusted_impostor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path, Path]]:
    """A real TLS server (openssl s_server) whose certificate chains to a CA that is only in the
    system store (SSL_CERT_FILE and SSL_CERT_DIR point at it); and our own, unrelated bundle.
    Yields (url, our bundle, the impostor's leaf)."""
    sys_key, sys_ca = _ca("system store CA")
    leaf_key, leaf = _server_leaf(sys_key, sys_ca)
    store = tmp_path / "system-store"
    store.mkdir()
    (store / "system-ca.pem").write_bytes(_pem(sys_ca))
    subprocess.run(["openssl", "rehash", str(store)], check=True, capture_output=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(store / "system-ca.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(store))
    (tmp_path / "leaf.pem").write_bytes(_pem(leaf))
    write_secret(
        tmp_path / "leaf.key",
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    ours = tmp_path / "our-bundle.pem"
    ours.write_bytes(_pem(_ca("our root")[1]))
    port = free_port()

    def listening() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    server = process.start_ready(
        "impostor",
        [
            "openssl",
            "s_server",
            "-accept",
            f"127.0.0.1:{port}",
            "-www",
            "-cert",
            str(tmp_path / "leaf.pem"),
            "-key",
            str(tmp_path / "leaf.key"),
        ],
        tmp_path / "impostor.log",
        "openssl s_server listening",
        listening,
    )
    try:
        yield f"https://127.0.0.1:{port}", ours, tmp_path / "leaf.pem"
    finally:
        server.stop()


def test_lab_clients_refuse_a_server_only_the_system_store_trusts(
    system_trusted_impostor: tuple[str, Path, Path],
) -> None:
    url, ours, _ = system_trusted_impostor
    # The attack works on a client that trusts the system store: it accepts the impostor.
    assert httpx.get(url + "/v1/status", verify=ssl.create_default_context(), timeout=5).status_code == 200
    # The lab's mTLS client (scenarios, readiness probes), given our bundle, refuses it.
    r = mtls_client.get(url + "/hello", bundle=ours, identity=None)
    assert (r.ok, r.error, r.reason) == (False, "tls_refused", "server_untrusted"), r
    # The RA readiness check refuses it too: an impostor RA never counts as "ready".
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        core.ra_status_ok(url, ours)


def test_openssl_verify_validator_ignores_the_system_ca_directory(
    system_trusted_impostor: tuple[str, Path, Path],
) -> None:
    _, ours, leaf = system_trusted_impostor
    # Plain `openssl verify -CAfile ours` also trusts SSL_CERT_DIR: it accepts the impostor's leaf.
    plain = subprocess.run(
        ["openssl", "verify", "-x509_strict", "-CAfile", str(ours), str(leaf)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert plain.returncode == 0, plain.stdout + plain.stderr
    verdict = validators.openssl_verify(leaf, ours, ours)
    assert "unable to get local issuer certificate" in verdict, verdict


# -- the one wait helper ---------------------------------------------------------------------------


def test_wait_fails_fast_with_the_log_when_the_awaited_process_exits(tmp_path: Path) -> None:
    proc = process.start(
        "dies",
        [
            sys.executable,
            "-c",
            "import sys, time; time.sleep(0.5); print('bind failed: address in use', flush=True); sys.exit(3)",
        ],
        tmp_path / "dies.log",
    )
    t0 = time.monotonic()
    try:
        with pytest.raises(process.WaitTimeout) as e:
            process.wait_until(
                "dies /healthz",
                lambda: httpx.get(f"http://127.0.0.1:{free_port()}/healthz").is_success,
                timeout=60,
                proc=proc,
            )
    finally:
        proc.stop()  # reaps it and closes its log
    assert time.monotonic() - t0 < 30  # noticed the exit, did not sit out the 60 s
    msg = str(e.value)
    assert msg.startswith("dies exited with 3 while waiting for dies /healthz"), msg
    assert "of 60s for dies /healthz; last error: ConnectError" in msg and "bind failed: address in use" in msg


def test_wait_that_gives_up_says_what_how_long_and_the_last_error(tmp_path: Path) -> None:
    proc = process.start(
        "sleeper",
        [sys.executable, "-c", "import time; print('still starting', flush=True); time.sleep(60)"],
        tmp_path / "sleeper.log",
    )
    try:
        with pytest.raises(process.WaitTimeout) as e:
            process.wait_until("sleeper ready", lambda: (tmp_path / "never").exists(), timeout=1, proc=proc)
    finally:
        proc.stop()
    msg = str(e.value)
    assert msg.startswith("gave up waiting for sleeper ready (waited 1.") and "of 1s" in msg, msg
    assert "last error: check returned false" in msg and "still starting" in msg
