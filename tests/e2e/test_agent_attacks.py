"""The real `zt-agent` against hostile RAs: a server trusted only by the system store, an RA
that answers with a certificate that does not verify, and one that slips in another root."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.conftest import CaDir, make_ca
from tests.e2e.fakes import Answer, FakeServer, Seen, make_public_ca
from zt.ca.authority import Authority
from zt.ca.layout import CaPaths
from zt.pki.encoding import key_pem, pem
from zt.pki.keys import generate_key
from zt.spiffe import workload_id

TOKEN = "ztb_attack_test_token_value"


def agent(
    ra_url: str, ca: CaDir, out: Path, tmp_path: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    tok = tmp_path / "token"
    tok.write_text(TOKEN)
    argv = [
        sys.executable,
        "-m",
        "zt.agent.main",
        "--ra",
        ra_url,
        "--bundle",
        str(ca.paths.bundle),
        "--bundle-sha256",
        ca.paths.bundle_sha256.read_text(),
        "--service",
        "a",
        "--out",
        str(out),
        "--token-file",
        str(tok),
        "--once",
        "--no-crl",
        "--bootstrap-timeout",
        "5",
        *extra,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})


def events(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def ra_server_files(ca: CaDir, d: Path) -> tuple[Path, Path]:
    """A TLS certificate for 127.0.0.1 from the pinned CA: the fake RA is trusted on the wire."""
    auth = Authority.load(CaPaths(ca.dir), "zt.lab")
    key = generate_key()
    leaf = auth.sign_leaf(
        key.public_key(),
        workload_id("zt.lab", "fake-ra"),
        dt.timedelta(hours=1),
        dt.datetime.now(dt.UTC),
        None,
        ip_addresses=["127.0.0.1"],
    )
    d.mkdir(parents=True, exist_ok=True)
    (d / "chain.pem").write_bytes(auth.chain_pem(leaf))
    (d / "key.pem").write_bytes(key_pem(key))
    return d / "chain.pem", d / "key.pem"


def issuing_with(auth: Authority, bundle_pem: bytes) -> object:
    """A responder that signs the agent's CSR with `auth` and answers with `bundle_pem`."""

    def respond(seen: Seen) -> Answer:
        csr = x509.load_pem_x509_csr(json.loads(seen.body)["csr"].encode())
        leaf = auth.sign_leaf(
            csr.public_key(),  # type: ignore[arg-type]
            workload_id("zt.lab", "a"),
            dt.timedelta(hours=1),
            dt.datetime.now(dt.UTC),
            None,
        )
        doc = {
            "chain": auth.chain_pem(leaf).decode(),
            "bundle": bundle_pem.decode(),
            "serial": format(leaf.serial_number, "x"),
        }
        return Answer(200, json.dumps(doc).encode(), {"Content-Type": "application/json"})

    return respond


def test_agent_sends_no_token_to_a_server_trusted_only_by_the_system_store(ca: CaDir, tmp_path: Path) -> None:
    public = make_public_ca(tmp_path / "public")
    env = {"SSL_CERT_FILE": str(public.root_file), "SSL_CERT_DIR": str(public.root_file.parent)}
    fake = FakeServer(lambda seen: Answer(200, b"{}"), public.cert_file, public.key_file)
    try:
        # The setup is effective: a client using the default store (as the agent did) trusts it.
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                "import ssl, sys, urllib.request; "
                "print(urllib.request.urlopen(sys.argv[1], context=ssl.create_default_context())"
                ".status)",
                fake.url + "/probe",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, **env},
        )
        assert probe.stdout.strip() == "200", probe.stderr
        fake.seen.clear()
        out = tmp_path / "out"
        r = agent(fake.url, ca, out, tmp_path, env=env)
    finally:
        fake.close()
    assert r.returncode == 1, r.stderr
    assert "remote error (permanent, not retried)" in r.stderr and "CERTIFICATE_VERIFY_FAILED" in r.stderr
    assert fake.seen == []  # the handshake failed before any request: no token, no CSR
    assert TOKEN not in r.stderr
    assert not (out / "current").exists()
    start = next(e for e in events(r.stderr) if e["event"] == "start")
    assert start["bundle_roots"] == 1


def test_agent_treats_an_answer_that_does_not_verify_as_a_permanent_remote_error(ca: CaDir, tmp_path: Path) -> None:
    # The RA is trusted on the wire, but signs with a CA outside the pinned bundle (same trust
    # domain name, other keys): the agent must refuse the answer, blame the RA, and not retry.
    other = Authority.load(CaPaths(make_ca(tmp_path / "other").dir), "zt.lab")
    cert, key = ra_server_files(ca, tmp_path / "ra-tls")
    fake = FakeServer(issuing_with(other, other.bundle_pem()), cert, key)  # type: ignore[arg-type]
    try:
        out = tmp_path / "out"
        r = agent(fake.url, ca, out, tmp_path)
    finally:
        fake.close()
    assert r.returncode == 1, r.stderr  # 1 = remote error; a ConfigError would be 2
    assert "remote error (permanent, not retried)" in r.stderr
    assert "does not verify against the pinned trust bundle" in r.stderr
    assert len(fake.seen) == 1  # not retried
    failed = next(e for e in events(r.stderr) if e["event"] == "bootstrap_failed")
    assert failed["remote"] is True and failed["permanent"] is True
    assert not (out / "current").exists()


def test_agent_writes_the_pinned_bundle_not_the_one_the_ra_sent(ca: CaDir, tmp_path: Path) -> None:
    auth = Authority.load(CaPaths(ca.dir), "zt.lab")
    public = make_public_ca(tmp_path / "public")
    sneaked = auth.bundle_pem() + public.root_file.read_bytes()  # our root plus the attacker's
    cert, key = ra_server_files(ca, tmp_path / "ra-tls")
    fake = FakeServer(issuing_with(auth, sneaked), cert, key)  # type: ignore[arg-type]
    try:
        out = tmp_path / "out"
        r = agent(fake.url, ca, out, tmp_path)
    finally:
        fake.close()
    assert r.returncode == 0, r.stderr
    written = x509.load_pem_x509_certificates((out / "bundle.pem").read_bytes())
    assert [pem(c) for c in written] == [pem(c) for c in auth.roots]
    ignored = next(e for e in events(r.stderr) if e["event"] == "ra_bundle_ignored")
    assert len(ignored["offered"]) == 2 and len(ignored["pinned"]) == 1  # type: ignore[arg-type]
    store = pkcs12.load_pkcs12((out / "truststore.p12").read_bytes(), (out / "keystore.pass").read_bytes())
    assert [c.certificate for c in store.additional_certs] == list(auth.roots)  # Java trusts the same


def test_running_agent_keeps_its_identity_when_a_renewal_answer_does_not_verify(ca: CaDir, tmp_path: Path) -> None:
    from zt.lab import process

    good = Authority.load(CaPaths(ca.dir), "zt.lab")
    other = Authority.load(CaPaths(make_ca(tmp_path / "other").dir), "zt.lab")
    calls: list[str] = []

    def respond(seen: Seen) -> Answer:
        calls.append(seen.path)
        auth = good if seen.path == "/v1/issue" else other  # renewals come back from a foreign CA
        csr = x509.load_pem_x509_csr(json.loads(seen.body)["csr"].encode())
        leaf = auth.sign_leaf(
            csr.public_key(),  # type: ignore[arg-type]
            workload_id("zt.lab", "a"),
            dt.timedelta(seconds=20),
            dt.datetime.now(dt.UTC),
            None,
        )
        doc = {"chain": auth.chain_pem(leaf).decode(), "bundle": auth.bundle_pem().decode()}
        return Answer(200, json.dumps(doc).encode(), {"Content-Type": "application/json"})

    cert, key = ra_server_files(ca, tmp_path / "ra-tls")
    fake = FakeServer(respond, cert, key)
    tok = tmp_path / "token"
    tok.write_text(TOKEN)
    out = tmp_path / "out"
    argv = [
        sys.executable,
        "-m",
        "zt.agent.main",
        "--ra",
        fake.url,
        "--bundle",
        str(ca.paths.bundle),
        "--service",
        "a",
        "--out",
        str(out),
        "--token-file",
        str(tok),
        "--no-crl",
    ]
    proc = process.start("agent", argv, tmp_path / "agent.log")
    try:
        process.wait_until("first identity", lambda: (out / "svid.json").exists(), proc=proc)
        first = json.loads((out / "svid.json").read_text())["serial"]
        process.wait_until("a refused renewal", lambda: "renewal_failed" in proc.log_text(), timeout=40, proc=proc)
        assert proc.alive()
        assert json.loads((out / "svid.json").read_text())["serial"] == first
    finally:
        code = proc.stop()
        fake.close()
    failed = [e for e in events(proc.log_text()) if e["event"] == "renewal_failed"]
    assert "does not verify against the pinned trust bundle" in str(failed[0]["reason"])
    assert code == 0 and "/v1/renew" in calls
