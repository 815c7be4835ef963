"""zt-agent against a real RA and CRL publisher: bootstrap, renewal, signals, CRL, failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography import x509

from tests.conftest import CaDir, CrlServer, RaServer, start_ra
from zt.lab import process


def agent_argv(ra: RaServer, service: str, out: Path, token_file: Path | None, *extra: str) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "zt.agent.main",
        "--ra",
        ra.url,
        "--bundle",
        str(ra.ca.paths.bundle),
        "--service",
        service,
        "--out",
        str(out),
        "--crl-interval",
        "0.5",
        *extra,
    ]
    if token_file is not None:
        argv += ["--token-file", str(token_file)]
    return argv


def token_file(ca: CaDir, service: str, tmp_path: Path) -> Path:
    f = tmp_path / f"{service}.token"
    assert ca.ztca("register", service, "--token-file", str(f)).code == 0
    return f


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def serial(out: Path) -> str:
    return str(json.loads((out / "svid.json").read_text())["serial"])


def test_once_bootstraps_writes_layout_and_crl(ra: RaServer, crl_server: CrlServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    pin = ra.ca.paths.bundle_sha256.read_text()
    r = run(agent_argv(ra, "a", out, token_file(ra.ca, "a", tmp_path), "--once", "--bundle-sha256", pin))
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "svid.json").read_text())
    assert meta["spiffe_id"] == "spiffe://zt.lab/svc/a"
    leaf = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
    assert format(leaf.serial_number, "x") == meta["serial"]
    assert (out / "crl.pem").exists()
    events = [json.loads(line)["event"] for line in r.stderr.splitlines() if line.startswith("{")]
    assert "identity_written" in events and "crl_written" in events
    assert "ztb_" not in r.stderr  # the token is never logged
    st = ra.ca.ztca("list", "--json").json()
    assert meta["serial"] in [c["serial"] for c in st["certificates"]]


def test_restart_reuses_identity_without_a_token(ra: RaServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run(agent_argv(ra, "a", out, token_file(ra.ca, "a", tmp_path), "--once", "--no-crl")).returncode == 0
    first = serial(out)
    r = run(agent_argv(ra, "a", out, None, "--once", "--no-crl"))
    assert r.returncode == 0, r.stderr
    assert serial(out) == first and "identity_reused" in r.stderr


def test_spent_token_fails_with_reason_and_writes_nothing(ra: RaServer, tmp_path: Path) -> None:
    tok = token_file(ra.ca, "a", tmp_path)
    assert run(agent_argv(ra, "a", tmp_path / "one", tok, "--once", "--no-crl")).returncode == 0
    r = run(agent_argv(ra, "a", tmp_path / "two", tok, "--once", "--no-crl"))
    assert r.returncode == 1 and "used_token" in r.stderr
    assert not (tmp_path / "two" / "current").exists()


@pytest.mark.parametrize(
    "extra, words",
    [
        (("--bundle-sha256", "00" * 32), "refusing to trust it"),
        (("--service", "../etc"), "invalid service name"),
        (("--renew-at", "1.5"), "--renew-at must be between 0 and 1"),
        (("--jitter", "0.7"), "--jitter must be at least 0 and less than --renew-at"),
        (("--crl-wait", "0.5"), "--crl-wait must be 0 (no long-poll) or between 1 and 3600"),
        (("--crl-interval", "0"), "--crl-interval must be between 0.1 and 86400"),
        (("--metrics-listen", "9102"), "--metrics-listen wants HOST:PORT"),
    ],
)
def test_bad_configuration_exits_2_with_message(
    ra: RaServer, tmp_path: Path, extra: tuple[str, ...], words: str
) -> None:
    r = run(agent_argv(ra, "a", tmp_path / "o", token_file(ra.ca, "a", tmp_path), "--once", *extra))
    assert r.returncode == 2 and words in r.stderr


def test_agent_does_not_trust_an_ra_outside_its_bundle(ra: RaServer, tmp_path: Path) -> None:
    from tests.conftest import make_ca

    other = make_ca(tmp_path / "other")
    argv = agent_argv(ra, "a", tmp_path / "o", token_file(ra.ca, "a", tmp_path), "--once", "--no-crl")
    argv[argv.index("--bundle") + 1] = str(other.paths.bundle)
    r = run(argv)
    assert r.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in r.stderr


HUP_COUNTER = textwrap.dedent("""
    import os, signal, sys, time
    path = sys.argv[1]
    n = 0
    def on_hup(*_):
        global n
        n += 1
        open(path, "w").write(str(n))
    signal.signal(signal.SIGHUP, on_hup)
    open(path + ".pid", "w").write(str(os.getpid()))
    for _ in range(1200):
        time.sleep(0.1)
""")


def test_daemon_renews_before_expiry_and_signals_the_service(
    ra: RaServer, crl_server: CrlServer, tmp_path: Path
) -> None:
    counter = tmp_path / "hups"
    svc = process.start("fake-service", [sys.executable, "-c", HUP_COUNTER, str(counter)], tmp_path / "svc.log")
    touched = tmp_path / "touched"
    out = tmp_path / "out"
    agent = None
    try:
        process.wait_until("fake service pid file", lambda: Path(str(counter) + ".pid").exists(), proc=svc)
        agent = process.start(
            "agent",
            agent_argv(
                ra,
                "a",
                out,
                token_file(ra.ca, "a", tmp_path),
                "--ttl",
                "30",
                "--signal",
                "HUP",
                "--pid-file",
                str(counter) + ".pid",
                "--touch",
                str(touched),
            ),
            tmp_path / "agent.log",
        )
        process.wait_until("first identity", lambda: (out / "svid.json").exists(), proc=agent)
        first = serial(out)
        process.wait_until("a renewal", lambda: serial(out) != first, timeout=40, proc=agent)
        leaf = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
        assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier
        ) == ["spiffe://zt.lab/svc/a"]
        process.wait_until(
            "SIGHUPs for bootstrap, crl and renewal",
            lambda: counter.exists() and int(counter.read_text() or 0) >= 3,
            proc=svc,
        )
        assert touched.exists()
        certs = {c["serial"]: c for c in ra.ca.ztca("list", "--json").json()["certificates"]}
        assert certs[serial(out)]["via"] == "renew"
    finally:
        if agent is not None:
            assert agent.stop() == 0
        svc.stop()
    log = [json.loads(line) for line in agent.log_text().splitlines() if line.startswith("{")]
    assert log[-1]["event"] == "stop"
    assert all("BEGIN" not in json.dumps(e) for e in log)  # no key material in logs


def test_agent_refreshes_crl_after_revocation(ra: RaServer, crl_server: CrlServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    agent = process.start("agent", agent_argv(ra, "a", out, token_file(ra.ca, "a", tmp_path)), tmp_path / "agent.log")
    try:
        process.wait_until("first CRL", lambda: (out / "crl.pem").exists(), proc=agent)
        ra.ca.register("victim")
        victim = ra.ca.ztca("issue", "victim", "--out", str(tmp_path / "v"), "--json").json()["serial"]
        ra.ca.ztca("revoke", victim)

        def listed() -> bool:
            crl = x509.load_pem_x509_crl((out / "crl.pem").read_bytes())
            return crl.get_revoked_certificate_by_serial_number(int(victim, 16)) is not None

        process.wait_until("the revocation in the agent's crl.pem", listed, timeout=15, proc=agent)
    finally:
        agent.stop()


def test_agent_survives_ra_outage_and_keeps_current_identity(ca: CaDir, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    ra = start_ra(ca, logs)
    out = tmp_path / "out"
    argv = agent_argv(ra, "a", out, token_file(ca, "a", tmp_path), "--ttl", "30", "--no-crl")
    agent = process.start("agent", argv, tmp_path / "agent.log")
    try:
        process.wait_until("first identity", lambda: (out / "svid.json").exists(), proc=agent)
        first = serial(out)
        ra.proc.kill()
        process.wait_until("a failed renewal", lambda: "renewal_failed" in agent.log_text(), timeout=40, proc=agent)
        assert serial(out) == first and agent.alive()
        ra2 = start_ra(ca, logs, name="zt-ra-2", port=int(ra.url.rsplit(":", 1)[1]))
        try:
            process.wait_until("renewal after the RA returned", lambda: serial(out) != first, timeout=40, proc=agent)
        finally:
            ra2.proc.stop()
    finally:
        agent.stop()
        ra.proc.stop()
    assert os.path.exists(out / "current")


def test_operator_updates_the_bundle_by_restarting_with_a_new_pin(ra: RaServer, tmp_path: Path) -> None:
    """The one way trust changes: the operator gives a new --bundle/--bundle-sha256 and restarts."""
    import hashlib

    from tests.conftest import make_ca

    out = tmp_path / "out"
    assert run(agent_argv(ra, "a", out, token_file(ra.ca, "a", tmp_path), "--once", "--no-crl")).returncode == 0
    first = serial(out)
    new_root = make_ca(tmp_path / "next").paths.bundle.read_bytes()
    both = tmp_path / "bundle-next.pem"
    both.write_bytes(ra.ca.paths.bundle.read_bytes() + new_root)  # old root kept while the new one rolls out
    argv = agent_argv(
        ra, "a", out, None, "--once", "--no-crl", "--bundle-sha256", hashlib.sha256(both.read_bytes()).hexdigest()
    )
    argv[argv.index("--bundle") + 1] = str(both)
    r = run(argv)
    assert r.returncode == 0, r.stderr
    assert "bundle_updated" in r.stderr and serial(out) == first  # same identity, new trust
    assert (out / "bundle.pem").read_bytes() == both.read_bytes()

    only_new = tmp_path / "bundle-only-new.pem"
    only_new.write_bytes(new_root)
    argv[argv.index("--bundle") + 1] = str(only_new)
    argv[argv.index("--bundle-sha256") + 1] = hashlib.sha256(new_root).hexdigest()
    r = run(argv)  # the identity on disk no longer verifies, and there is no token
    assert r.returncode == 2 and "identity_not_reusable" in r.stderr and "no usable identity" in r.stderr
    assert (out / "bundle.pem").read_bytes() == both.read_bytes()


def test_every_generation_carries_the_bundle_checksum_services_check(ra: RaServer, tmp_path: Path) -> None:
    """CONTRACT B end to end: the agent, pinned to `ztca init`'s bundle.pem.sha256, writes
    gen-*/bundle.pem.sha256 of the bundle it wrote (equal to the pin, since it writes the pinned
    bundle) with DIR/bundle.pem.sha256 following `current`; a directory written before the
    checksum existed gets it as a new generation of the same identity on the next start."""
    import hashlib

    out = tmp_path / "out"
    pin = ra.ca.paths.bundle_sha256.read_text()
    base = agent_argv(ra, "a", out, token_file(ra.ca, "a", tmp_path), "--once", "--no-crl", "--bundle-sha256", pin)
    r = run(base)
    assert r.returncode == 0, r.stderr
    gdir = (out / "current").resolve()
    line = (gdir / "bundle.pem.sha256").read_text()
    assert line == f"{hashlib.sha256((gdir / 'bundle.pem').read_bytes()).hexdigest()}  bundle.pem\n"
    assert line.split()[0] == pin.split()[0]
    assert os.readlink(out / "bundle.pem.sha256") == "current/bundle.pem.sha256"
    assert (out / "bundle.pem.sha256").read_text() == line

    first, old_gen = serial(out), gdir.name
    (gdir / "bundle.pem.sha256").unlink()  # as an agent from before CONTRACT B left it
    r = run(agent_argv(ra, "a", out, None, "--once", "--no-crl", "--bundle-sha256", pin))
    assert r.returncode == 0, r.stderr
    events = [json.loads(x)["event"] for x in r.stderr.splitlines() if x.startswith("{")]
    assert "bundle_checksum_added" in events and "identity_reused" not in events
    new = (out / "current").resolve()
    assert new.name != old_gen and serial(out) == first  # same certificate, no token spent
    assert (new / "bundle.pem.sha256").read_text() == line
