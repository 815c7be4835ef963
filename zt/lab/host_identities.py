"""Identities the test holds on the host, whatever runtime the components run in.

Both runtimes give scenarios the same kinds of identity: a registered client bootstrapped by
the real agent (`zt-agent --once`) over the RA's reachable address, and an impostor made by a
second, unrelated CA with our trust domain's name. The one difference between runtimes is how
a token is minted (ztca on the host's CA directory, or inside the RA container); callers pass
the token file in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from zt.errors import ZtError
from zt.lab.identity import LabIdentity
from zt.spiffe import workload_id


class LabError(ZtError):
    """The lab could not do what a scenario asked for."""


def host_ztca(ca_dir: Path, *args: str, log: Path | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`ztca VERB --dir CA_DIR --json ...` as a real command; its JSON answer. Its stderr (JSON
    log lines, docs/logs.md) is appended to `log` when given."""
    verb, *rest = args
    argv = [sys.executable, "-m", "zt.cli.ztca", verb, "--dir", str(ca_dir), "--json", *rest]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as f:
            f.write(r.stderr)
    if r.returncode != 0:
        raise LabError(f"ztca {verb} failed ({r.returncode}): {r.stderr.strip()}")
    return dict(json.loads(r.stdout)) if r.stdout.strip() else {}


def bootstrap_with_agent(
    ra_url: str,
    bundle: Path,
    token_file: Path,
    name: str,
    spiffe_id: str,
    out: Path,
    *,
    ttl_seconds: int | None = None,
    log: Path | None = None,
) -> LabIdentity:
    """Run the real agent once (bootstrap, no CRL) to give the test an identity in `out`."""
    argv = [
        sys.executable,
        "-m",
        "zt.agent.main",
        "--ra",
        ra_url,
        "--bundle",
        str(bundle),
        "--token-file",
        str(token_file),
        "--service",
        name,
        "--out",
        str(out),
        "--once",
        "--no-crl",
    ]
    if ttl_seconds:
        argv += ["--ttl", str(ttl_seconds)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as f:
            f.write(r.stderr)
    if r.returncode != 0:
        raise LabError(f"agent for client identity {name} failed: {r.stderr.strip()[-500:]}")
    return LabIdentity(name, spiffe_id, out)


def foreign_identity(work_dir: Path, trust_domain: str, name: str) -> LabIdentity:
    """Same trust domain name, same SPIFFE ID shape, an unrelated root: an impostor."""
    foreign = work_dir / "foreign-ca"
    out = work_dir / "foreign" / name
    if not (out / "current").exists():
        if not (foreign / "root.pem").exists():
            host_ztca(foreign, "init", "--trust-domain", trust_domain)
        host_ztca(foreign, "register", name)
        host_ztca(foreign, "issue", name, "--out", str(out))
    return LabIdentity(name, str(workload_id(trust_domain, name)), out)
