"""The runtime interface: how a topology becomes running components.

Scenarios see only `RunningLab`: where each service answers (from the test's side and from
other services' side), which identities exist, and how to mint more. The process runtime and
the container runtime both implement it, so a scenario runs unchanged on either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, TypeVar

from zt.lab.identity import LabIdentity
from zt.lab.ra_sources import RaAnswer
from zt.lab.secrets_scan import Secret
from zt.lab.topology import Topology
from zt.lab.toxiproxy import Toxiproxy


class RunningLab(Protocol):
    topology: Topology
    runtime_name: str
    work_dir: Path

    def service_url(self, service: str, *, from_service: bool = False) -> str:
        """https://host:port of a service's mTLS listener, as the test (or another service) reaches it."""
        ...

    def metrics_url(self, service: str) -> str: ...

    def agent_metrics_url(self, service: str) -> str:
        """http://host:port of the service's agent's metrics (needs Topology.agent_metrics)."""
        ...

    def rotate(self, service: str) -> None:
        """Ask the service's agent for a manual rotation now (SIGUSR1); LabError if it cannot."""
        ...

    def component_log(self, name: str) -> str:
        """The log so far of a component by name (`agent-service-a`, `service-b`, `zt-ra`...)."""
        ...

    def ra_url(self) -> str: ...

    def prometheus_url(self) -> str:
        """http://host:port of the lab's Prometheus server (needs Topology.prometheus)."""
        ...

    def crl_url(self) -> str: ...

    def bundle(self) -> Path: ...

    def agent_identity(self, service: str) -> LabIdentity:
        """The identity the service's agent wrote (the files the service runs on)."""
        ...

    def client_identity(self, name: str, *, ttl_seconds: int | None = None) -> LabIdentity:
        """A registered workload identity for the test itself to call services with."""
        ...

    def foreign_identity(self, name: str) -> LabIdentity:
        """An identity with a SPIFFE ID of our trust domain but issued by an unrelated CA."""
        ...

    def issued_certificates(self) -> list[str]:
        """PEM of every certificate our CA issued during this run."""
        ...

    def revoke(
        self, *, serial: str | None = None, service: str | None = None, reason: str | None = None
    ) -> dict[str, object]: ...

    def bench_crl(self, entries: int) -> dict[str, object]:
        """Benchmarks: `entries` revocations of never-issued serials put in force by the CA at once."""
        ...

    def ztca(self, *args: str) -> dict[str, Any]:
        """`ztca VERB --json ...` on the run's CA, wherever it lives; its JSON answer."""
        ...

    def reregister(self, service: str) -> dict[str, object]:
        """`ztca register SERVICE --reenable`, its new one-time token written where the
        service's agent reads its token (the operator's recovery after a revocation)."""
        ...

    def collect_logs(self, dest: Path) -> list[Path]: ...

    def ztca_exit(self, *args: str) -> tuple[int, str]:
        """`ztca ARGS` as given (zt.lab.core.CA_DIR stands for the CA directory): exit code, output."""
        ...

    def ca_file(self, name: str) -> bytes:
        """A file of the CA directory (`audit.jsonl`), wherever the CA lives."""
        ...

    def secrets(self) -> list[Secret]:
        """Every secret the run created (keys, tokens, keystore passwords), for the log scan."""

    def register(self, name: str, token_file: Path) -> None:
        """Register `name` with the CA; its one-time token into the host's `token_file` (0600)."""
        ...

    def set_policy(self, text: str) -> None:
        """Replace the policy file both services run with (a copy of deploy/mesh-policy.json)."""
        ...

    def ra_issue(self, token: str, spiffe_id: str, *, source: int) -> RaAnswer:
        """`POST /v1/issue` from source 0 or 1: two addresses the RA tells apart."""
        ...

    def agent_once(self, name: str, token_file: Path, bundle_pem: bytes, pin: str) -> tuple[int, str]:
        """The real agent, once, with `bundle_pem` as its bundle pinned to `pin`: exit code, log."""
        ...

    def stop_component(self, name: str) -> None:
        """A fault: stop one component ("crl", the publisher) and leave the rest running."""
        ...

    def start_component(self, name: str) -> None:
        """Its heal: start it again where it was, waiting for real readiness."""
        ...

    def kill_component(self, name: str) -> dict[str, Any]:
        """Chaos plan 6: SIGKILL "ra" or "agent-<service>" by PID; (pid, exit code)."""
        ...

    def restart_component(self, name: str) -> int:
        """Start a killed component again as it was, wait until it answers; its new PID."""
        ...

    def toxiproxy(self) -> Toxiproxy:
        """The client of the lab's toxiproxy server (needs Topology.chaos; zt.lab.edges)."""
        ...

    def up(self) -> None:
        """Bring every component up, in order, waiting for real readiness."""
        ...

    def stop(self) -> None: ...


class Runtime(Protocol):
    name: str

    def create(self, topology: Topology, work_dir: Path) -> RunningLab:
        """The lab, not started yet: the caller runs up(), and always collect_logs() and stop()."""
        ...

    def start(self, topology: Topology, work_dir: Path) -> RunningLab:
        """create() and up(), stopping whatever started if up() fails."""
        ...


LabT = TypeVar("LabT", bound=RunningLab)


def bring_up(lab: LabT) -> LabT:
    """up(), and if anything fails (or is interrupted) stop whatever did start, then re-raise."""
    try:
        lab.up()
    except BaseException:
        lab.stop()
        raise
    return lab
