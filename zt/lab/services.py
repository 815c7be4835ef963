"""Starting one native service (service-a or service-b) as a local process, and waiting
until it really serves: /healthz on its metrics port, then an mTLS handshake."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zt.errors import ZtError
from zt.lab import core, process
from zt.lab.identity import LabIdentity
from zt.lab.ports import free_port

REPO = Path(__file__).resolve().parents[2]
BINARIES = {"service-a": REPO / "build" / "service-a", "service-b": REPO / "build" / "service-b"}


@dataclass
class RunningService:
    name: str
    proc: process.Proc
    tls_port: int
    metrics_port: int
    cert_dir: Path
    pid_file: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.tls_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"


def binary_for(kind: str) -> Path:
    binary = BINARIES[kind]
    if not binary.exists():
        raise ZtError(f"{binary} is missing: build the services first (make native)")
    return binary


def start_service(
    kind: str,
    name: str,
    cert_dir: Path,
    run_dir: Path,
    *,
    expect_peer: str,
    crl_stale: str = "refuse",
    tls_port: int | None = None,
    metrics_port: int | None = None,
    extra: tuple[str, ...] = (),
    policy: Path | None = None,
) -> RunningService:
    tls, metrics = tls_port or free_port(), metrics_port or free_port()
    pid_file = run_dir / f"{name}.pid"
    argv = [
        str(binary_for(kind)),
        *core.service_args(
            name=name,
            cert_dir=str(cert_dir),
            listen=f"127.0.0.1:{tls}",
            metrics_listen=f"127.0.0.1:{metrics}",
            expect_peer=expect_peer,
            crl_stale=crl_stale,
            pid_file=str(pid_file),
            policy=str(policy) if policy is not None else None,
        ),
        *extra,
    ]
    proc = process.start(name, argv, run_dir / "logs" / f"{name}.log", cwd=run_dir)
    return RunningService(name, proc, tls, metrics, cert_dir, pid_file)


def wait_ready(svc: RunningService, bundle: Path, probe: LabIdentity | None, timeout: float = 60.0) -> None:
    core.wait_service(svc.name, svc.proc, svc.metrics_url, "127.0.0.1", svc.tls_port, bundle, probe, timeout=timeout)
