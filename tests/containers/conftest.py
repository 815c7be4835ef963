"""Capabilities the container tests need, decided in one place.

On a developer's machine without a Docker engine (or without the images) these tests skip and
say what to run, and the session ends with one line that counts them; in CI (`CI=true`)
nothing may skip, so the same missing capability fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TAG = os.environ.get("ZT_IMAGE_TAG", "dev")
IMAGES = [
    f"{name}:{TAG}"
    for name in ("zt-ra", "zt-crl", "zt-agent", "zt-service-a", "zt-service-b", "zt-prometheus", "zt-postgres")
]


def require(ok: bool, reason: str) -> None:
    """Skip (developer machine) or fail (CI=true) when a capability is missing."""
    if ok:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} [CI=true: container tests must not skip]", pytrace=False)
    pytest.skip(reason)


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()[-800:]}")
    return r


def engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return docker("info", "--format", "{{.ServerVersion}}", timeout=15, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.fixture(scope="session")
def engine() -> None:
    require(engine_answers(), "no Docker engine answers: run scripts/docker-engine.sh start (as root)")


@pytest.fixture(scope="session")
def images(engine: None) -> list[str]:
    missing = [i for i in IMAGES if docker("image", "inspect", i, check=False).returncode != 0]
    require(not missing, f"images missing ({', '.join(missing)}): run scripts/build-images.sh")
    return IMAGES


def compose_command() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.fixture(scope="session")
def compose() -> list[str]:
    cmd = compose_command()
    require(
        cmd is not None,
        "neither `docker compose` nor docker-compose is installed "
        "(scripts/docker-engine.sh start installs Debian's docker-compose)",
    )
    assert cmd is not None
    return [*cmd, "-f", str(REPO / "compose.yaml")]


@pytest.fixture(scope="session")
def compose_model(compose: list[str]) -> dict[str, object]:
    """compose.yaml as the compose tool itself resolves it (anchors merged, defaults applied)."""
    if compose[:2] == ["docker", "compose"]:
        r = subprocess.run([*compose, "config", "--format", "json"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return dict(json.loads(r.stdout))
    r = subprocess.run([*compose, "config"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # docker-compose v1 prints YAML; Debian's package depends on python3-yaml, so the system
    # Python that runs docker-compose can parse it.
    py = subprocess.run(
        ["/usr/bin/python3", "-c", "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"],
        input=r.stdout,
        capture_output=True,
        text=True,
        timeout=60,
    )
    require(py.returncode == 0, f"cannot parse docker-compose's output without python3-yaml: {py.stderr[-200:]}")
    return dict(json.loads(py.stdout))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> Iterator[None]:
    """One line at the end (after pytest's short summary), not only one skip reason per test."""
    yield
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "tests/containers/" in r.nodeid]
    if skipped:
        reasons = sorted(
            {str(r.longrepr[2]).removeprefix("Skipped: ") for r in skipped if isinstance(r.longrepr, tuple)}
        )
        terminalreporter.write_line(
            f"CONTAINER TESTS NOT RUN: {len(skipped)} skipped: {'; '.join(reasons)}", yellow=True, bold=True
        )
