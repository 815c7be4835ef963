"""One container of a container-runtime lab run, and the images it is made from.

A `Box` wraps a testcontainers container by role name (`ra`, `agent-service-a`, ...): its
state (for the lab's one wait helper, which stops waiting when the container has exited),
its logs, `exec`, its published ports, and reading files out of it as a tar stream.
"""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zt.lab.host_identities import LabError

if TYPE_CHECKING:
    from docker.models.containers import Container
    from testcontainers.core.container import DockerContainer

IMAGES = {
    "ra": "zt-ra",
    "crl": "zt-crl",
    "agent": "zt-agent",
    "cpp": "zt-service-a",
    "java": "zt-service-b",
    "prometheus": "zt-prometheus",  # only for labs with Topology.prometheus (Milestone 4)
    "postgres": "zt-postgres",  # only for labs with Topology.store == "postgres" (docs/scaling.md)
}
# As in compose.yaml: read-only root filesystem, no capabilities, no privilege gain.
HARDENED: dict[str, Any] = {"read_only": True, "cap_drop": ["ALL"], "security_opt": ["no-new-privileges:true"]}
LABEL_RUN, LABEL_PID = "zt.lab.run", "zt.lab.pid"  # every container, network and volume of a run carries both


def testcontainers_defaults() -> None:
    """This host has no registry (no Ryuk image to pull) and publishes on loopback only.

    Must run before testcontainers is imported: it reads some settings at import time.
    """
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    os.environ.setdefault("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")


def image_tag() -> str:
    """Which build of the images (scripts/build-images.sh tags them `dev` unless told)."""
    return os.environ.get("ZT_IMAGE_TAG", "dev")


def image(kind: str) -> str:
    return f"{IMAGES[kind]}:{image_tag()}"


@dataclass
class Box:
    """One container of the run, by role name (`ra`, `agent-service-a`, ...)."""

    name: str
    tc: DockerContainer
    started: bool = False
    # A one-shot CLI container (ca-init, register-*): its stdout is the command's answer, not a
    # log; its log lines are its stderr (`log_lines`).
    one_shot: bool = False
    ports: dict[int, int] = field(default_factory=dict)  # container port -> published port

    @property
    def container(self) -> Container:
        return self.tc.get_wrapped_container()

    def exit_state(self) -> str | None:
        """None while the container runs; else its state and exit code (process.Watched)."""
        c = self.container
        c.reload()
        if c.status == "running":
            return None
        return f"is {c.status} (exit code {c.attrs.get('State', {}).get('ExitCode')})"

    def logs(self, tail: int | None = None) -> bytes:
        return self.container.logs(stdout=True, stderr=True, tail=tail if tail else "all")

    def log_lines(self) -> bytes:
        """What the component logged: stderr and stdout, or for a one-shot CLI its stderr only."""
        return self.container.logs(stdout=not self.one_shot, stderr=True)

    def log_tail(self, n: int = 30) -> str:
        try:
            return self.logs(n).decode(errors="replace")
        except Exception as e:  # noqa: BLE001 - a failure message must not fail for want of a log
            return f"(log unavailable: {e})"

    def exec(self, *argv: str) -> tuple[int, str]:
        r = self.container.exec_run(list(argv), demux=False)
        out = r.output if isinstance(r.output, bytes) else b""
        return int(r.exit_code or 0), out.decode(errors="replace")

    def exec_split(self, *argv: str) -> tuple[int, str, str]:
        """`exec` with stdout and stderr apart: a command that answers on stdout and logs JSON
        lines on stderr (ztca) must not have the two interleaved."""
        r = self.container.exec_run(list(argv), demux=True)
        out, err = r.output if isinstance(r.output, tuple) else (None, None)
        return int(r.exit_code or 0), (out or b"").decode(errors="replace"), (err or b"").decode(errors="replace")

    def port(self, container_port: int) -> int:
        if container_port not in self.ports:
            self.ports[container_port] = int(self.tc.get_exposed_port(container_port))
        return self.ports[container_port]

    def read_tar(self, path: str) -> tarfile.TarFile:
        stream, _ = self.container.get_archive(path)
        return tarfile.open(fileobj=io.BytesIO(b"".join(stream)))

    def copy_file(self, src: str, dest: Path) -> None:
        """One regular file out of the container."""
        with self.read_tar(src) as tar:
            member = tar.next()
            data = tar.extractfile(member) if member is not None else None
            if data is None:
                raise LabError(f"{src} in {self.name} is not a regular file")
            dest.write_bytes(data.read())
