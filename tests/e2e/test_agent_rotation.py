"""Manual rotation and metrics on a real zt-agent against a real RA: SIGUSR1 and `zt-agent
rotate` each write a new generation, log a `rotation` event and bump `rotation_success_total`
as scraped over HTTP."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import CrlServer, RaServer
from tests.e2e.test_agent import agent_argv, serial, token_file
from zt.clock import parse_rfc3339
from zt.lab import process
from zt.lab.ports import free_port


def scrape(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics", timeout=5).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def log_events(agent: process.Proc, name: str) -> list[dict[str, object]]:
    """The agent's `name` events so far. The agent may be writing while we read: only whole
    lines (ended by a newline) are parsed, so a half-written last line is left for later."""
    text = agent.log_text()
    whole = text[: text.rfind("\n") + 1]
    lines = (json.loads(line) for line in whole.splitlines() if line.startswith("{"))
    return [e for e in lines if e.get("event") == name]


def rotate_cli(pid_file: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "zt.agent.main", "rotate", "--pid-file", str(pid_file)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def generations(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith("gen-"))


def test_manual_rotation_by_signal_and_by_command_writes_new_generations_logs_and_counts(
    ra: RaServer, crl_server: CrlServer, tmp_path: Path
) -> None:
    out, pid_file = tmp_path / "out", tmp_path / "run" / "agent.pid"
    metrics = f"http://127.0.0.1:{free_port()}"
    argv = agent_argv(
        ra,
        "a",
        out,
        token_file(ra.ca, "a", tmp_path),
        "--ttl",
        "600",  # no scheduled renewal within the test: every rotation here is manual
        "--agent-pid-file",
        str(pid_file),
        "--metrics-listen",
        metrics.removeprefix("http://"),
    )
    agent = process.start("agent", argv, tmp_path / "agent.log")
    try:
        process.wait_until("first identity", lambda: (out / "svid.json").exists(), proc=agent)
        process.wait_until("agent pid file", pid_file.exists, proc=agent)
        assert int(pid_file.read_text()) == agent.pid and pid_file.stat().st_mode & 0o777 == 0o644
        process.wait_until("metrics server", lambda: "cert_age_seconds" in httpx.get(metrics + "/metrics").text)
        before = scrape(metrics)
        assert before["rotation_success_total"] == 0 and before["rotation_failure_total"] == 0
        assert 0 <= before["cert_age_seconds"] < 120 and 480 < before["cert_expiry_seconds"] <= 600
        assert httpx.get(metrics + "/healthz").json()["status"] == "ok"
        first, gens = serial(out), generations(out)

        agent.signal(signal.SIGUSR1)
        process.wait_until("a rotation after SIGUSR1", lambda: serial(out) != first, timeout=30, proc=agent)
        second = serial(out)
        process.wait_until("the rotation log line", lambda: log_events(agent, "rotation"), proc=agent)
        rotation = log_events(agent, "rotation")[0]
        assert rotation["service"] == "a" and rotation["trigger"] == "manual"
        assert rotation["old_serial"] == first and rotation["new_serial"] == second
        assert rotation["generation"] == json.loads((out / "svid.json").read_text())["generation"]
        assert isinstance(rotation["duration_ms"], (int, float)) and rotation["duration_ms"] > 0
        leaf_not_after = json.loads((out / "svid.json").read_text())["not_after"]
        assert parse_rfc3339(str(rotation["not_after"])) == parse_rfc3339(leaf_not_after)
        assert scrape(metrics)["rotation_success_total"] == 1
        assert len(set(generations(out)) - set(gens)) == 1

        r = rotate_cli(pid_file)
        assert r.returncode == 0, r.stderr
        assert str(agent.pid) in r.stdout
        process.wait_until("a rotation after `zt-agent rotate`", lambda: serial(out) != second, timeout=30, proc=agent)
        process.wait_until("two rotations counted", lambda: scrape(metrics)["rotation_success_total"] == 2)
        rotations = log_events(agent, "rotation")
        assert [e["trigger"] for e in rotations] == ["manual", "manual"]
        assert rotations[1]["old_serial"] == second and rotations[1]["new_serial"] == serial(out)
        certs = {c["serial"]: c for c in ra.ca.ztca("list", "--json").json()["certificates"]}
        assert certs[serial(out)]["via"] == "renew"
        assert agent.alive()
    finally:
        code = agent.stop()
    assert code == 0
    assert not pid_file.exists()  # removed at exit
    r = rotate_cli(pid_file)
    assert r.returncode == 1 and "cannot read pid file" in r.stderr


def test_rotate_against_a_stale_pid_file_fails_clearly(tmp_path: Path) -> None:
    pid_file = tmp_path / "agent.pid"
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid_file.write_text(done.stdout)
    r = rotate_cli(pid_file)
    assert r.returncode == 1 and "stale pid file" in r.stderr and str(pid_file) in r.stderr


def test_scheduled_renewal_logs_trigger_schedule_and_counts(ra: RaServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    metrics = f"127.0.0.1:{free_port()}"
    argv = agent_argv(
        ra, "a", out, token_file(ra.ca, "a", tmp_path), "--ttl", "30", "--no-crl", "--metrics-listen", metrics
    )
    agent = process.start("agent", argv, tmp_path / "agent.log")
    try:
        process.wait_until("first identity", lambda: (out / "svid.json").exists(), proc=agent)
        first = serial(out)
        process.wait_until("a scheduled rotation", lambda: serial(out) != first, timeout=45, proc=agent)
        process.wait_until("the rotation log line", lambda: log_events(agent, "rotation"), proc=agent)
        rotation = log_events(agent, "rotation")[0]
        assert rotation["trigger"] == "schedule" and rotation["old_serial"] == first
        process.wait_until("counted", lambda: scrape("http://" + metrics)["rotation_success_total"] >= 1)
        scheduled = log_events(agent, "renewal_scheduled")[0]
        assert scheduled["serial"] == first
        # two thirds of the lifetime, moved earlier by at most the default jitter (a tenth)
        assert 2 / 3 - 0.1 - 0.001 <= float(scheduled["fraction"]) <= 2 / 3 + 0.001  # type: ignore[arg-type]
    finally:
        agent.stop()
