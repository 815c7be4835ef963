"""What makes a run reproducible: revision, command line, tool versions, seed."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PACKAGES = (
    "cryptography",
    "fastapi",
    "uvicorn",
    "httpx",
    "pyjwt",
    "prometheus-client",
    "pkilint",
    "pytest",
    "testcontainers",
    "locust",
)


def _run(*argv: str) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20, cwd=REPO)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({type(e).__name__})"
    return (r.stdout + r.stderr).strip()


def describe(argv: list[str], seed: int, runtime: str) -> dict[str, Any]:
    versions: dict[str, str] = {}
    for p in PACKAGES:
        try:
            versions[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            continue
    java = _run("java", "-version").splitlines()
    return {
        "git_revision": _run("git", "rev-parse", "HEAD"),
        "git_dirty": bool(_run("git", "status", "--porcelain", "--untracked-files=no")),
        "command_line": argv,
        "runtime": runtime,
        "seed": seed,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "openssl": _run("openssl", "version"),
        "java": java[0] if java else "unavailable",
        "packages": versions,
    }
