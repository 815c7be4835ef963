"""./demo.sh mvp, with processes and with compose: the seed's exit check as a user runs it."""

from __future__ import annotations

import subprocess

import pytest

from tests.containers.conftest import REPO, docker

CALLER = '"caller":"spiffe://zt.lab/svc/service-a"'


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO / "demo.sh"), "mvp", *args], cwd=REPO, capture_output=True, text=True, timeout=280)


def test_demo_with_processes_shows_service_a_reaching_service_b() -> None:
    r = run_demo()
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert CALLER in r.stdout.replace(" ", "")
    assert "service-a -> service-b over mTLS: OK" in r.stdout


def test_demo_with_compose_curls_service_b_from_service_a_and_tears_down(images: list[str], compose: list[str]) -> None:
    r = run_demo("--compose")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert CALLER in r.stdout
    project = next((w for w in r.stdout.split() if w.startswith("zt-demo-")), None)
    assert project is not None, r.stdout
    left = docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}").stdout.split()
    left += docker("volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={project}").stdout.split()
    left += docker("network", "ls", "-q", "--filter", f"label=com.docker.compose.project={project}").stdout.split()
    assert left == [], f"demo left {left}"


@pytest.mark.parametrize("args", [[], ["--bogus"]])
def test_demo_rejects_unknown_commands(args: list[str]) -> None:
    r = subprocess.run(
        [str(REPO / "demo.sh"), *(["mvp", *args] if args else ["nope"])], capture_output=True, text=True, timeout=30
    )
    assert r.returncode == 2 and "usage" in r.stderr


def test_demo_revoke_refuses_service_a_after_ztca_revoke_and_serves_a_valid_caller() -> None:
    r = subprocess.run([str(REPO / "demo.sh"), "revoke"], cwd=REPO, capture_output=True, text=True, timeout=280)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "alert certificate revoked" in r.stdout
    assert '"event":"handshake_rejected","reason":"revoked"' in r.stdout
    assert '"caller":"spiffe://zt.lab/svc/operator"' in r.stdout
    assert "revoked certificate refused, valid one served: OK" in r.stdout
