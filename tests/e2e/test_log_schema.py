"""Every log line the Python components write follows the one schema, and no secret is in any.

One run with every Python component as a real process (`ztca` as a command, zt-ra, zt-crl,
zt-agent) doing the things that log the seed's events: a CA made with an encrypted root key,
services registered (by ztca and over the RA's admin API), bootstraps, a manual rotation, a
refused token and a refused admin credential, revocations by the RA and by ztca, an
intermediate rotated with the root key's passphrase. Then:

- every line of every log is checked against zt/log_line.schema.json (docs/logs.md), so a
  field renamed or retyped in one component fails CI;
- the events the schema requires fields for are there, from the component that should write
  them, with the serials the run really issued and revoked (so an empty or partial log cannot
  pass);
- every secret the run created (bootstrap tokens, the admin token, the root key passphrase,
  keystore passwords, every private key on disk) is searched for in every log: none may appear.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import CaDir, RaServer, start_crl, start_ra
from tests.e2e.test_agent import agent_argv, serial
from zt.agent.material import build_csr, csr_pem
from zt.ca.layout import CaPaths
from zt.lab import process
from zt.lab.ports import free_port
from zt.logschema import validate_file
from zt.pki.keys import generate_key


class Ztca:
    """`ztca` as the operator runs it: a real process; its stderr (JSON log lines) kept in a log."""

    def __init__(self, ca_dir: Path, log: Path) -> None:
        self.ca_dir, self.log = ca_dir, log

    def __call__(self, verb: str, *args: str) -> dict[str, Any]:
        argv = [sys.executable, "-m", "zt.cli.ztca", verb, "--dir", str(self.ca_dir), "--json", *args]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"ztca {verb}: {r.stderr}"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("a", encoding="utf-8") as f:
            f.write(r.stderr)
        return dict(json.loads(r.stdout)) if r.stdout.strip() else {}


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def events(path: Path, name: str) -> list[dict[str, Any]]:
    return [e for e in lines(path) if e["event"] == name]


def wait_for_event(proc: process.Proc, name: str, count: int = 1) -> None:
    def seen() -> bool:
        text = proc.log_text()
        whole = text[: text.rfind("\n") + 1]
        names = [str(json.loads(x).get("event")) for x in whole.splitlines() if x.startswith("{")]
        return names.count(name) >= count

    process.wait_until(f"{proc.name} logged {name} x{count}", seen, timeout=30, proc=proc)


def private_key_bodies(root: Path, skip: Path) -> dict[str, str]:
    """Every PEM private key under `root` (not under `skip`): its base64 body lines, by file."""
    found: dict[str, str] = {}
    for p in root.rglob("*"):
        if not p.is_file() or p.is_symlink() or skip in p.parents:
            continue
        text = p.read_bytes().decode("latin-1")
        for m in re.finditer(r"-----BEGIN ([A-Z ]*PRIVATE KEY)-----\n(.*?)\n-----END \1-----", text, re.DOTALL):
            for i, body_line in enumerate(m.group(2).splitlines()):
                if len(body_line) >= 40:  # a header line (Proc-Type) or a short tail proves nothing
                    found[f"{p.relative_to(root)} line {i}"] = body_line
    return found


def test_every_python_component_log_line_follows_the_schema_and_holds_no_secret(tmp_path: Path) -> None:
    run_dir = tmp_path
    logs = run_dir / "logs"
    ca_dir = run_dir / "ca"
    crl_port = free_port()
    passphrase = secrets.token_urlsafe(24)
    phrase_file = run_dir / "root.passphrase"
    phrase_file.write_text(passphrase + "\n")
    phrase_file.chmod(0o600)
    ztca = Ztca(ca_dir, logs / "ztca.log")

    ztca("init", "--crl-url", f"http://127.0.0.1:{crl_port}/crl", "--root-key-passphrase-file", str(phrase_file))
    ca = CaDir(CaPaths(ca_dir), crl_port)
    tokens: list[str] = [ca.admin_token()]
    a_token, b_token = run_dir / "a.token", run_dir / "b.token"
    ztca("register", "a", "--token-file", str(a_token))
    tokens.append(a_token.read_text().strip())
    b_reg = ztca("register", "b")
    b_token.write_text(b_reg["token"] + "\n")
    tokens.append(b_reg["token"])

    ra: RaServer = start_ra(ca, logs, name="zt-ra")
    crl = start_crl(ca, logs)
    agent_out = run_dir / "agents" / "a"
    agent = process.start("zt-agent", agent_argv(ra, "a", agent_out, a_token, "--ttl", "600"), logs / "zt-agent-a.log")
    procs = [agent, crl.proc, ra.proc]
    try:
        process.wait_until("agent a: identity and CRL", lambda: (agent_out / "crl.pem").exists(), proc=agent)
        first_a = serial(agent_out)
        agent.signal(signal.SIGUSR1)  # a manual rotation: the RA logs issued via renewal
        wait_for_event(agent, "rotation")
        second_a = serial(agent_out)

        # b bootstraps once (a second real agent process, its own log).
        b_out = run_dir / "agents" / "b"
        with (logs / "zt-agent-b.log").open("ab") as log:
            r = subprocess.run(
                agent_argv(ra, "b", b_out, b_token, "--once", "--no-crl"),
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=60,
            )
        assert r.returncode == 0, (logs / "zt-agent-b.log").read_text()
        b_serial = serial(b_out)

        tls = ssl.create_default_context(cafile=str(ca.paths.bundle))
        admin = {"Authorization": f"Bearer {ca.admin_token()}"}
        with httpx.Client(base_url=ra.url, verify=tls, timeout=10) as c:
            # Admin over HTTP: a registration (its token is a secret of this run too).
            reg = c.post("/v1/register", json={"service": "c"}, headers=admin)
            assert reg.status_code == 201, reg.text
            tokens.append(reg.json()["token"])
            # Refused credentials that look like real ones: refused, logged, never echoed.
            forged = "ztb_" + secrets.token_urlsafe(32)
            forged_admin = "zta_" + secrets.token_urlsafe(32)
            tokens += [forged, forged_admin]
            csr = csr_pem(build_csr(generate_key(), "spiffe://zt.lab/svc/c"))
            bad = c.post("/v1/issue", json={"csr": csr}, headers={"Authorization": f"Bearer {forged}"})
            assert bad.status_code == 401, bad.text
            bad = c.post("/v1/register", json={"service": "d"}, headers={"Authorization": f"Bearer {forged_admin}"})
            assert bad.status_code == 401, bad.text
            # The RA revokes b's certificate (admin token).
            rv = c.post("/v1/revoke", json={"serial": b_serial, "reason": "key-compromise"}, headers=admin)
            assert rv.status_code == 200, rv.text
            ra_crl_number = rv.json()["crl_number"]

        # ztca: the admin path, and a revocation by the CLI.
        c_issued = ztca("issue", "c", "--out", str(run_dir / "certs" / "c"))
        ztca_revoked = ztca("revoke", c_issued["serial"], "--reason", "superseded")
        ztca("list")
        ztca("status")
        wait_for_event(crl.proc, "crl_loaded", 2)  # the publisher saw a new CRL
        wait_for_event(agent, "crl_written", 2)  # and the agent fetched one
    finally:
        codes = {p.name: p.stop() for p in procs}
    # uvicorn ends a SIGTERM'd server by re-raising the signal once it has shut down cleanly
    assert codes["zt-agent"] == 0 and codes["zt-crl"] in (0, -15) and codes["zt-ra"] in (0, -15), codes
    ztca("rotate-intermediate", "--root-key-passphrase-file", str(phrase_file))

    # 1. Every line of every log follows the schema, and names its own component.
    component_of = {
        "ztca.log": "ztca",
        f"zt-ra-{ra.url.rsplit(':', 1)[1]}.log": "zt-ra",
        "zt-crl.log": "zt-crl",
        "zt-agent-a.log": "zt-agent",
        "zt-agent-b.log": "zt-agent",
    }
    assert sorted(p.name for p in logs.iterdir()) == sorted(component_of)
    problems = {name: validate_file(logs / name) for name in component_of}
    assert all(not p for p in problems.values()), json.dumps(problems, indent=1)
    for name, component in component_of.items():
        assert {e["component"] for e in lines(logs / name)} == {component}, name
    total = sum(len(lines(logs / name)) for name in component_of)
    assert total >= 30, total

    # 2. The seed's events, from the right component, with the run's real serials.
    ra_log, ztca_log = logs / next(n for n, c in component_of.items() if c == "zt-ra"), logs / "ztca.log"
    issued = {e["serial"]: e for e in events(ra_log, "issued")}
    assert issued[first_a]["via"] == "token" and issued[first_a]["actor"] == "a"
    assert issued[b_serial]["via"] == "token" and issued[b_serial]["actor"] == "b"
    renewal = issued[second_a]
    assert renewal["via"] == "renewal" and renewal["renews"] == first_a
    assert renewal["actor"] == "spiffe://zt.lab/svc/a"
    [ra_reg] = events(ra_log, "registered")
    assert (ra_reg["service"], ra_reg["actor"]) == ("c", "admin")
    [ra_rev] = events(ra_log, "revoked")
    assert ra_rev["serials"] == [b_serial] and ra_rev["actor"] == "admin"
    assert ra_rev["reason"] == "key-compromise" and ra_rev["crl_number"] == ra_crl_number
    rejected = sorted(e["error"] for e in events(ra_log, "rejected"))
    assert rejected == ["invalid_credential", "unknown_token"], rejected

    assert [e["service"] for e in events(ztca_log, "registered")] == ["a", "b"]
    assert all(e["actor"] == "ztca" for e in events(ztca_log, "registered"))
    [z_issued] = events(ztca_log, "issued")
    assert (z_issued["serial"], z_issued["via"], z_issued["actor"]) == (c_issued["serial"], "admin", "ztca")
    [z_rev] = events(ztca_log, "revoked")
    assert z_rev["serials"] == [c_issued["serial"]] and z_rev["actor"] == "ztca" and z_rev["service"] is None
    assert z_rev["crl_number"] == ztca_revoked["crl_number"] and z_rev["reason"] == "superseded"
    assert [e["event"] for e in events(ztca_log, "ca_created")] == ["ca_created"]
    assert len(events(ztca_log, "intermediate_rotated")) == 1

    agent_log = logs / "zt-agent-a.log"
    [rotation] = events(agent_log, "rotation")
    assert (rotation["old_serial"], rotation["new_serial"], rotation["service"]) == (first_a, second_a, "a")
    assert {e["crl_number"] for e in events(logs / "zt-crl.log", "crl_loaded")} >= {1, ra_crl_number}

    # 3. No secret of the run in any log (nor anywhere in the logs directory).
    keys = private_key_bodies(run_dir, skip=logs)
    stores = sorted(run_dir.rglob("keystore.pass"))
    assert len(keys) >= 5 * 2, sorted(keys)  # intermediate, root (encrypted), RA server, a x2, b, c
    assert len(stores) >= 4, stores  # a's two generations, b's, c's
    named: dict[str, str] = {f"token {i}": t for i, t in enumerate(tokens)}
    named["root key passphrase"] = passphrase
    named.update({f"keystore password {p.relative_to(run_dir)}": p.read_text().strip() for p in stores})
    named.update({f"private key {k}": v for k, v in keys.items()})
    assert all(len(v) >= 16 for v in named.values())
    everything = b"".join(p.read_bytes() for p in logs.rglob("*") if p.is_file()).decode("utf-8")
    leaked = sorted(name for name, value in named.items() if value in everything)
    assert leaked == [], leaked
    assert "PRIVATE KEY" not in everything
    assert not re.search(r"zt[ab]_[A-Za-z0-9_-]{16,}", everything)
    assert os.stat(phrase_file).st_mode & 0o777 == 0o600
