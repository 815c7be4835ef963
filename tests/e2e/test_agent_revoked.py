"""The real zt-agent whose own certificate is revoked (real RA, real CRL publisher): it says so
(log and gauge), stops renewing, keeps the revoked generation in place for the service, and
bootstraps again with a new key as soon as the operator writes a new token."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx

from tests.conftest import CrlServer, RaServer
from tests.e2e.test_agent import agent_argv, serial, token_file
from tests.e2e.test_agent_rotation import log_events, scrape
from zt.lab import process
from zt.lab.ports import free_port


def test_revoked_agent_stops_renewing_and_bootstraps_again_after_a_new_token(
    ra: RaServer, crl_server: CrlServer, tmp_path: Path
) -> None:
    out, metrics = tmp_path / "out", f"127.0.0.1:{free_port()}"
    tok = token_file(ra.ca, "a", tmp_path)
    argv = agent_argv(ra, "a", out, tok, "--metrics-listen", metrics, "--token-poll", "0.3")
    agent = process.start("agent", argv, tmp_path / "agent.log")
    url = "http://" + metrics
    try:
        process.wait_until("first identity and CRL", lambda: (out / "crl.pem").exists(), proc=agent)
        first = serial(out)
        first_gen = (out / "current").resolve()
        assert scrape(url)["identity_revoked"] == 0

        assert ra.ca.ztca("revoke", "--service", "a").code == 0
        process.wait_until("identity_revoked logged", lambda: log_events(agent, "identity_revoked"), proc=agent)
        revoked = log_events(agent, "identity_revoked")[0]
        assert revoked["service"] == "a" and revoked["serial"] == first
        assert scrape(url)["identity_revoked"] == 1
        health = httpx.get(url + "/healthz").json()
        assert health["identity_revoked"] is True and health["serial"] == first

        # No renewal with a revoked certificate, even when asked.
        agent.signal(signal.SIGUSR1)
        process.wait_until("manual rotation refused", lambda: log_events(agent, "rotation_refused"), proc=agent)
        assert log_events(agent, "rotation_refused")[0]["reason"] == "identity_revoked"
        got = scrape(url)
        assert got["rotation_success_total"] == 0 and got["rotation_failure_total"] == 0
        # The service keeps its files: the revoked generation stays current until replaced.
        assert serial(out) == first and (out / "current").resolve() == first_gen
        assert (first_gen / "key.pem").exists()

        # The old (spent) token rewritten as is changes nothing.
        tok.write_text(tok.read_text())
        assert agent.alive()

        r = ra.ca.ztca("register", "a", "--reenable", "--token-file", str(tok))
        assert r.code == 0, r.err
        process.wait_until("a new identity", lambda: serial(out) != first, timeout=30, proc=agent)
        second = serial(out)
        process.wait_until("the bootstrap log line", lambda: log_events(agent, "bootstrap"), proc=agent)
        boot = log_events(agent, "bootstrap")
        assert len(boot) == 1 and boot[0]["serial"] == second and boot[0]["old_serial"] == first
        assert boot[0]["reason"] == "revoked" and boot[0]["service"] == "a"
        assert boot[0]["generation"] == json.loads((out / "svid.json").read_text())["generation"]
        process.wait_until("gauge back to 0", lambda: scrape(url)["identity_revoked"] == 0, proc=agent)
        certs = {c["serial"]: c for c in ra.ca.ztca("list", "--json").json()["certificates"]}
        assert certs[second]["via"] == "token"  # a bootstrap with the token, not a renewal
        new_key = (out / "current" / "key.pem").read_bytes()
        assert new_key != (first_gen / "key.pem").read_bytes()  # a fresh key

        # Renewal works again with the new identity.
        agent.signal(signal.SIGUSR1)
        process.wait_until("a rotation of the new identity", lambda: serial(out) != second, timeout=30, proc=agent)
        assert scrape(url)["rotation_success_total"] == 1
        assert "ztb_" not in agent.log_text()  # the tokens are never logged
    finally:
        assert agent.stop() == 0


def test_renewal_refused_as_revoked_by_the_ra_stops_renewing_without_a_crl(ra: RaServer, tmp_path: Path) -> None:
    """No CRL at all (--no-crl, as when the publisher is down): the RA's refusal of a renewal
    with a revoked certificate is enough to stop retrying and wait for a new token."""
    out, metrics = tmp_path / "out", f"127.0.0.1:{free_port()}"
    tok = token_file(ra.ca, "a", tmp_path)
    argv = agent_argv(ra, "a", out, tok, "--no-crl", "--metrics-listen", metrics, "--token-poll", "0.3")
    agent = process.start("agent", argv, tmp_path / "agent.log")
    url = "http://" + metrics
    try:
        process.wait_until("first identity", lambda: (out / "svid.json").exists(), proc=agent)
        first = serial(out)
        assert ra.ca.ztca("revoke", first).code == 0
        agent.signal(signal.SIGUSR1)
        process.wait_until("identity_revoked logged", lambda: log_events(agent, "identity_revoked"), proc=agent)
        revoked = log_events(agent, "identity_revoked")[0]
        assert revoked["source"] == "ra" and revoked["ra_code"] == "revoked_certificate" and revoked["serial"] == first
        got = scrape(url)
        assert got["identity_revoked"] == 1 and got["rotation_failure_total"] == 1
        agent.signal(signal.SIGUSR1)  # asked again: refused by the agent itself, the RA is not bothered
        process.wait_until("manual rotation refused", lambda: log_events(agent, "rotation_refused"), proc=agent)
        assert scrape(url)["rotation_failure_total"] == 1

        assert ra.ca.ztca("register", "a", "--token-file", str(tok)).code == 0  # only the serial was revoked
        process.wait_until("a new identity", lambda: serial(out) != first, timeout=30, proc=agent)
        process.wait_until("the bootstrap log line", lambda: log_events(agent, "bootstrap"), proc=agent)
        assert scrape(url)["identity_revoked"] == 0
    finally:
        assert agent.stop() == 0
