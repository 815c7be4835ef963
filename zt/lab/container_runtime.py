"""The container runtime: every component in its own container, on networks made for the run.

The same deployment as the process runtime and compose.yaml, from the images that
scripts/build-images.sh makes: a one-shot `zt-ca-init` creates the CA in a volume only it and
the RA mount, and publishes the trust bundle into a volume the agents mount read-only; a
one-shot `ztca register` per workload writes that workload's token into the workload's own
token volume; then the RA (`ra.zt.lab`), the CRL publisher (`crl.zt.lab`, the CRL distribution
point in every leaf), an agent per workload, and each service on the certificate volume its
agent writes. service-a joins its agent's PID namespace, so `--signal HUP --pid-file` works
across containers; service-b watches its directory.

Two networks per run, as in compose.yaml: `pki` (RA, CRL publisher, agents) and `mesh` (the
services), so a service cannot reach the RA. Unlike compose's they are not `internal`, because
scenarios reach containers over ports published on 127.0.0.1 (and only there); services reach
each other by network alias (`service_url(s, from_service=True)` is `https://service-b:8081`).
Readiness is real, as in the process runtime: HTTP health, the agents' files, an mTLS
handshake. Teardown removes every container, network and volume of the run, also after a
failure; everything carries the label `zt.lab.run`, and what a run whose process died left
behind is swept at the next start.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import ssl
import tarfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import httpx

from zt.agent.writer import point_current
from zt.fsutil import write_secret
from zt.lab import host_identities, mtls_client
from zt.lab.host_identities import LabError
from zt.lab.identity import LabIdentity
from zt.lab.process_runtime import progress
from zt.lab.runtime import bring_up
from zt.lab.topology import ServiceSpec, Topology

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network

IMAGES = {"ra": "zt-ra", "crl": "zt-crl", "agent": "zt-agent", "cpp": "zt-service-a", "java": "zt-service-b"}
RA_ALIAS, CRL_ALIAS = "ra.zt.lab", "crl.zt.lab"
RA_PORT, CRL_PORT = 8443, 8444
PORTS = {"cpp": (8080, 9080), "java": (8081, 9081)}  # mTLS, metrics: the services' defaults
CA, CA_CRL, CRL, TRUST = "/var/lib/zt/ca", "/var/lib/zt/ca/crl", "/var/lib/zt/crl", "/var/lib/zt/trust"
TOKEN, CERTS, RUN = "/var/lib/zt/token", "/var/lib/zt/certs", "/run/zt"
LABEL_RUN, LABEL_PID = "zt.lab.run", "zt.lab.pid"
PUBLIC_CA_FILES = ("root.pem", "intermediate.pem", "bundle.pem", "bundle.pem.sha256")  # never a key
# As in compose.yaml: read-only root filesystem, no capabilities, no privilege gain.
HARDENED: dict[str, Any] = {"read_only": True, "cap_drop": ["ALL"], "security_opt": ["no-new-privileges:true"]}


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
    ports: dict[int, int] = field(default_factory=dict)  # container port -> published port

    @property
    def container(self) -> Container:
        return self.tc.get_wrapped_container()

    def running(self) -> tuple[bool, str]:
        c = self.container
        c.reload()
        state = c.attrs.get("State", {})
        return c.status == "running", f"{c.status} (exit code {state.get('ExitCode')})"

    def logs(self, tail: int | None = None) -> bytes:
        return self.container.logs(stdout=True, stderr=True, tail=tail if tail else "all")

    def log_tail(self, n: int = 30) -> str:
        return self.logs(n).decode(errors="replace")

    def exec(self, *argv: str) -> tuple[int, str]:
        r = self.container.exec_run(list(argv), demux=False)
        out = r.output if isinstance(r.output, bytes) else b""
        return int(r.exit_code or 0), out.decode(errors="replace")

    def port(self, container_port: int) -> int:
        if container_port not in self.ports:
            self.ports[container_port] = int(self.tc.get_exposed_port(container_port))
        return self.ports[container_port]

    def read_tar(self, path: str) -> tarfile.TarFile:
        stream, _ = self.container.get_archive(path)
        return tarfile.open(fileobj=io.BytesIO(b"".join(stream)))


class ContainerLab:
    runtime_name = "docker"

    def __init__(self, topology: Topology, work_dir: Path) -> None:
        """Nothing is created yet (no engine call): stop() and collect_logs() work at any point."""
        self.topology = topology
        self.work_dir = work_dir
        self.ca_dir = work_dir / "ca"  # public CA certificates copied out (scenarios read intermediate.pem)
        self.logs = work_dir / "logs"
        self.run = f"zt-{uuid.uuid4().hex[:8]}"
        self.labels = {LABEL_RUN: self.run, LABEL_PID: str(os.getpid()), "zt.lab.work_dir": str(work_dir)}
        self._docker: docker.DockerClient | None = None
        self.boxes: dict[str, Box] = {}
        self.networks: dict[str, Network] = {}
        self.volumes: list[str] = []
        self._clients: dict[str, LabIdentity] = {}
        self._stopped = False

    # -- containers, volumes ---------------------------------------------------------------------

    @property
    def docker(self) -> docker.DockerClient:
        if self._docker is None:
            testcontainers_defaults()
            from testcontainers.core.docker_client import DockerClient

            try:
                self._docker = DockerClient().client
                self._docker.ping()
            except Exception as e:
                raise LabError(f"no Docker engine answers ({e}); start one: scripts/docker-engine.sh start") from e
        return self._docker

    def volume(self, what: str) -> str:
        name = f"{self.run}-{what}"
        if name not in self.volumes:
            self.docker.volumes.create(name=name, labels=self.labels)
            self.volumes.append(name)
        return name

    def _box(self, name: str, kind: str, command: list[str], *, mounts: list[tuple[str, str, str]],
             network: str | None, aliases: tuple[str, ...] = (), ports: tuple[int, ...] = (),
             entrypoint: list[str] | None = None, env: dict[str, str] | None = None, **kwargs: Any) -> Box:
        """Create (not start) a container of the run; the caller starts it."""
        from testcontainers.core.container import DockerContainer

        tc = DockerContainer(image(kind)).with_name(f"{self.run}-{name}").with_command(command)
        for volume, path, mode in mounts:
            tc.with_volume_mapping(volume, path, mode)
        published: dict[str, Any] = tc.ports  # docker-py also takes (host_ip, host_port): loopback only
        for p in ports:
            published[f"{p}/tcp"] = ("127.0.0.1", None)
        if network is None:
            kwargs["network_mode"] = "none"
        else:
            tc.with_network(self.networks[network]).with_network_aliases(name, *aliases)
        tc.with_tmpfs_mount("/tmp")
        for k, v in (env or {}).items():
            tc.with_env(k, v)
        extra = {**HARDENED, "labels": self.labels, **kwargs}
        if entrypoint is not None:
            extra["entrypoint"] = entrypoint
        tc.with_kwargs(**extra)
        box = Box(name, tc)
        self.boxes[name] = box
        return box

    def _start(self, box: Box) -> Box:
        progress(f"starting {box.name} ({box.tc.image})")
        box.started = True  # from here on stop() removes it, even if start() fails half-way
        box.tc.start()
        return box

    def _run_once(self, box: Box, timeout: float = 60.0) -> None:
        """Start a one-shot container and require exit code 0."""
        self._start(box)
        code = int(box.container.wait(timeout=timeout).get("StatusCode", -1))
        if code != 0:
            raise LabError(f"{box.name} exited with {code}; log tail:\n{box.log_tail()}")

    def _wait(self, what: str, box: Box, check: Callable[[], bool], timeout: float = 60.0) -> None:
        """Retry `check` until true; fail at once, with the log, if the container stops."""
        t0, last = time.monotonic(), "never checked"
        while time.monotonic() - t0 < timeout:
            alive, state = box.running()
            if not alive:
                raise LabError(f"{box.name} is {state} while waiting for {what}; log tail:\n{box.log_tail()}")
            try:
                if check():
                    return
                last = "check returned false"
            except Exception as e:  # noqa: BLE001 - any probe failure means "not ready yet"
                last = f"{type(e).__name__}: {e}"
            time.sleep(0.2)
        raise LabError(f"gave up waiting for {what} after {time.monotonic() - t0:.1f}s; last error: {last}; "
                       f"{box.name} log tail:\n{box.log_tail()}")

    # -- bring-up ------------------------------------------------------------------------------

    def up(self) -> None:
        """Bring every component up, in order, waiting for real readiness (the caller stops)."""
        from testcontainers.core.network import Network

        if (self.ca_dir / "bundle.pem").exists():  # its identities would chain to another run's CA
            raise LabError(f"{self.work_dir} already holds a run; give each run a new work dir")
        self._preflight()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        for role in ("pki", "mesh"):
            net = Network(docker_network_kw={"labels": self.labels})
            net.name = f"{self.run}-{role}"
            self.networks[role] = net.create()
        ca = [(self.volume("ca"), CA, "rw"), (self.volume("crl"), CA_CRL, "rw")]
        progress(f"ca-init (trust domain {self.topology.trust_domain}; run {self.run})")
        init = self._box("ca-init", "ra", [], entrypoint=["zt-ca-init"], network=None,
                         mounts=[*ca, (self.volume("trust"), TRUST, "rw")],
                         env={"ZT_TRUST_DOMAIN": self.topology.trust_domain, "ZT_SERVICES": "",
                              "ZT_CRL_URL": f"http://{CRL_ALIAS}:{CRL_PORT}/crl",
                              "ZT_CRL_VALIDITY": self.topology.crl_validity})
        self._run_once(init)
        self.ca_dir.mkdir(parents=True, exist_ok=True)
        for f in PUBLIC_CA_FILES:
            self._copy_file(init, f"{CA}/{f}", self.ca_dir / f)
        for s in self.topology.services:  # one-time tokens, straight into each agent's token volume
            self._run_once(self._box(f"register-{s.name}", "ra", ["register", s.name, "--dir", CA, "--token-file",
                                                                   f"{TOKEN}/token"], entrypoint=["ztca"],
                                     network=None, mounts=[*ca, (self.volume(f"token-{s.name}"), TOKEN, "rw")]))
        progress(f"registered {', '.join(s.name for s in self.topology.services)}")
        self._start_ra(ca)
        self._start_crl()
        for s in self.topology.services:
            self._start_agent(s)
        for s in self.topology.services:
            self._start_service(s)
        progress("lab is up (containers)")

    def _preflight(self) -> None:
        missing = [image(k) for k in IMAGES if not self.docker.images.list(name=image(k))]
        if missing:
            raise LabError(f"images missing: {', '.join(missing)}; build them: scripts/build-images.sh")
        labels = self.docker.images.get(image("ra")).labels or {}
        built = labels.get("org.opencontainers.image.revision", "?")[:12]
        dirty = " (dirty tree)" if labels.get("zt.dirty") == "true" else ""
        progress(f"images :{image_tag()} built from {built}{dirty}; scripts/build-images.sh rebuilds them")
        sweep_stale(self.docker)

    def _start_ra(self, ca: list[tuple[str, str, str]]) -> None:
        # Agents verify the RA by its alias; the host (client identities) by 127.0.0.1.
        box = self._start(self._box("ra", "ra", [
            "--ca-dir", CA, "--listen", f"0.0.0.0:{RA_PORT}", "--server-name", RA_ALIAS, "--server-name", "127.0.0.1",
            "--leaf-ttl", f"{self.topology.leaf_ttl_seconds}s", "--workers", str(self.topology.ra_workers),
            "--crl-check-interval", "1"], mounts=ca, network="pki", aliases=(RA_ALIAS,), ports=(RA_PORT,)))
        tls = ssl.create_default_context(cafile=str(self.bundle()))
        self._wait("zt-ra /v1/status", box, lambda: httpx.get(self.ra_url() + "/v1/status", verify=tls,
                                                               timeout=2).status_code == 200)

    def _start_crl(self) -> None:
        box = self._start(self._box("crl", "crl", ["--crl-dir", CRL, "--listen", f"0.0.0.0:{CRL_PORT}"],
                                    mounts=[(self.volume("crl"), CRL, "ro")], network="pki", aliases=(CRL_ALIAS,),
                                    ports=(CRL_PORT,)))
        self._wait("zt-crl /healthz", box, lambda: httpx.get(self.crl_url() + "/healthz", timeout=2).status_code == 200)

    def _start_agent(self, s: ServiceSpec) -> None:
        pin = (self.ca_dir / "bundle.pem.sha256").read_text().split()[0]
        argv = ["--ra", f"https://{RA_ALIAS}:{RA_PORT}", "--bundle", f"{TRUST}/bundle.pem", "--bundle-sha256", pin,
                "--token-file", f"{TOKEN}/token", "--service", s.name, "--out", CERTS,
                "--crl-interval", str(self.topology.crl_interval)]
        if self.topology.agent_ttl_seconds:
            argv += ["--ttl", str(self.topology.agent_ttl_seconds)]
        mounts = [(self.volume("trust"), TRUST, "ro"), (self.volume(f"token-{s.name}"), TOKEN, "ro"),
                  (self.volume(f"certs-{s.name}"), CERTS, "rw")]
        if s.reload == "signal":
            argv += ["--signal", "HUP", "--pid-file", f"{RUN}/{s.name}.pid"]
            mounts.append((self.volume(f"run-{s.name}"), RUN, "ro"))
        else:
            argv += ["--touch", f"{CERTS}/reload.stamp"]
        box = self._start(self._box(f"agent-{s.name}", "agent", argv, mounts=mounts, network="pki"))
        self._wait(f"agent-{s.name} to write identity and CRL", box, lambda: box.exec(
            "test", "-s", f"{CERTS}/current/svid.json", "-a", "-s", f"{CERTS}/crl.pem")[0] == 0)

    def _start_service(self, s: ServiceSpec) -> None:
        tls, metrics = PORTS[s.language]
        argv = ["--cert-dir", CERTS, "--listen", f"0.0.0.0:{tls}", "--metrics-listen", f"0.0.0.0:{metrics}",
                "--expect-peer", self.topology.spiffe_id(s.expect_peer), "--name", s.name,
                "--crl-stale", self.topology.crl_stale]
        mounts = [(self.volume(f"certs-{s.name}"), CERTS, "ro")]
        extra: dict[str, Any] = {}
        if s.reload == "signal":  # the agent's SIGHUP must reach us: join its PID namespace
            argv += ["--pid-file", f"{RUN}/{s.name}.pid"]
            mounts.append((self.volume(f"run-{s.name}"), RUN, "rw"))
            extra["pid_mode"] = f"container:{self.boxes[f'agent-{s.name}'].container.id}"
        box = self._start(self._box(s.name, s.language, argv, mounts=mounts, network="mesh",
                                    aliases=(f"{s.name}.zt.lab",), ports=(tls, metrics), **extra))
        self._wait(f"{s.name} /healthz", box, lambda: httpx.get(self.metrics_url(s.name) + "/healthz",
                                                                 timeout=2).status_code == 200)
        probe = self.client_identity("lab-probe")
        self._wait(f"{s.name} mTLS handshake", box, lambda: mtls_client.handshake_ok(
            "127.0.0.1", box.port(tls), self.bundle(), probe), timeout=30)

    # -- copying out -------------------------------------------------------------------------

    def _copy_file(self, box: Box, src: str, dest: Path) -> None:
        with box.read_tar(src) as tar:
            member = tar.next()
            data = tar.extractfile(member) if member is not None else None
            if data is None:
                raise LabError(f"{src} in {box.name} is not a regular file")
            dest.write_bytes(data.read())

    def _sync_cert_dir(self, service: str) -> Path:
        """A local copy of the agent's directory: the generation `current` points to now, the
        `current` link and the convenience links, and crl.pem, in the agent's own layout."""
        box = self.boxes[f"agent-{service}"]
        local = self.work_dir / "certs" / service
        local.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):  # the agent may rotate (and prune) between readlink and the copy
            code, out = box.exec("readlink", f"{CERTS}/current")
            gen = PurePosixPath(out.strip()).name
            if code != 0 or not gen.startswith("gen-"):
                raise LabError(f"agent-{service} has no current generation: {out.strip()}")
            if (local / gen / "svid.json").exists():
                break
            tmp = local / f".{gen}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                with box.read_tar(f"{CERTS}/{gen}") as tar:
                    tar.extractall(tmp, filter="data")
            except Exception as e:
                if attempt == 2:
                    raise LabError(f"cannot copy {gen} out of agent-{service}: {e}") from e
                continue
            (tmp / gen).rename(local / gen)
            tmp.rmdir()
            break
        point_current(local, gen)  # the same layout as the agent's own directory
        with contextlib.suppress(Exception):  # absent until the agent's first CRL fetch
            self._copy_file(box, f"{CERTS}/crl.pem", local / "crl.pem")
        return local

    # -- what scenarios use ----------------------------------------------------------------------

    def _published(self, name: str, port: int) -> int:
        return self.boxes[name].port(port)

    def service_url(self, service: str, *, from_service: bool = False) -> str:
        tls = PORTS[self.topology.service(service).language][0]
        if from_service:
            return f"https://{service}:{tls}"
        return f"https://127.0.0.1:{self._published(service, tls)}"

    def metrics_url(self, service: str) -> str:
        metrics = PORTS[self.topology.service(service).language][1]
        return f"http://127.0.0.1:{self._published(service, metrics)}"

    def ra_url(self) -> str:
        return f"https://127.0.0.1:{self._published('ra', RA_PORT)}"

    def crl_url(self) -> str:
        return f"http://127.0.0.1:{self._published('crl', CRL_PORT)}"

    def bundle(self) -> Path:
        return self.ca_dir / "bundle.pem"

    def agent_identity(self, service: str) -> LabIdentity:
        """Copied out of the agent's volume at each call, so serials are the current ones."""
        return LabIdentity(service, self.topology.spiffe_id(service), self._sync_cert_dir(service))

    def ztca(self, *args: str) -> dict[str, Any]:
        """`ztca VERB --dir <CA volume> --json ...` inside the RA container (which holds the CA)."""
        verb, *rest = args
        code, out = self.boxes["ra"].exec("ztca", verb, "--dir", CA, "--json", *rest)
        if code != 0:
            raise LabError(f"ztca {verb} in the RA container failed ({code}): {out.strip()[-500:]}")
        return dict(json.loads(out)) if out.strip() else {}

    def client_identity(self, name: str, *, ttl_seconds: int | None = None) -> LabIdentity:
        """Registered in the RA container, bootstrapped by an agent on the host over the RA's
        published port (the RA's certificate also names 127.0.0.1)."""
        if name not in self._clients:
            token = self.work_dir / "run" / f"client-{name}.token"
            token.parent.mkdir(parents=True, exist_ok=True)
            write_secret(token, str(self.ztca("register", name)["token"]).encode() + b"\n")
            self._clients[name] = host_identities.bootstrap_with_agent(
                self.ra_url(), self.bundle(), token, name, self.topology.spiffe_id(name),
                self.work_dir / "clients" / name, ttl_seconds=ttl_seconds, log=self.logs / "host-agents.log")
        return self._clients[name]

    def foreign_identity(self, name: str) -> LabIdentity:
        """Same trust domain name and SPIFFE ID shape, an unrelated root: made on the host."""
        return host_identities.foreign_identity(self.work_dir, self.topology.trust_domain, name)

    def issued_certificates(self) -> list[str]:
        return [str(c["pem"]) for c in self.ztca("list", "--pem")["certificates"]]

    def revoke(self, *, serial: str | None = None, service: str | None = None,
               reason: str | None = None) -> dict[str, Any]:
        args = ["revoke"] + ([serial] if serial else ["--service", service or ""])
        if reason:
            args += ["--reason", reason]
        return self.ztca(*args)

    def collect_logs(self, dest: Path) -> list[Path]:
        """One file per container (stdout and stderr as the engine kept them), plus the host's."""
        dest.mkdir(parents=True, exist_ok=True)
        copied = []
        for name, box in self.boxes.items():
            target = dest / f"{name}.log"
            try:
                target.write_bytes(box.logs())
            except Exception as e:  # noqa: BLE001 - a lost log must not hide the others
                target.write_text(f"(logs of {name} unavailable: {e})\n")
            copied.append(target)
        for f in sorted(self.logs.glob("*.log")):
            target = dest / f.name
            target.write_bytes(f.read_bytes())
            copied.append(target)
        return copied

    def _remove_volume(self, name: str) -> None:
        self.docker.volumes.get(name).remove(force=True)

    def stop(self) -> None:
        """Remove the run's containers (newest first), network and volumes; idempotent."""
        if self._stopped or self._docker is None:  # stopped already, or nothing was ever created
            return
        self._stopped = True
        failed: list[str] = []

        def attempt(what: str, action: Callable[..., object], *args: Any, **kwargs: Any) -> None:
            try:
                action(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - report it and go on removing the rest
                failed.append(f"{what}: {e}")

        for name, box in reversed(list(self.boxes.items())):
            if box.started:  # SIGTERM first: the components exit 0 on it, as in the process runtime
                progress(f"stopping {name}")
                attempt(f"stop {name}", box.container.stop, timeout=5)
                attempt(f"remove {name}", box.container.remove, force=True, v=False)
        for role, net in self.networks.items():
            attempt(f"network {role}", net.remove)
        for v in reversed(self.volumes):
            attempt(f"volume {v}", self._remove_volume, v)
        progress(f"removed run {self.run}: {len(self.boxes)} containers, {len(self.networks)} networks, "
                 f"{len(self.volumes)} volumes" + (f"; left over: {'; '.join(failed)}" if failed else ""))


def _pid_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(client: docker.DockerClient) -> None:
    """Remove what runs left behind whose process is gone (SIGKILL, a lost machine session):
    never a live run's, so concurrent runs on one engine do not disturb each other."""
    filters: dict[str, str | list[str] | bool] = {"label": LABEL_RUN}
    found: list[tuple[str, dict[str, str] | None, Any]] = []  # containers first: they hold the rest
    found += [(f"container {c.name}", c.labels, c) for c in client.containers.list(all=True, filters=filters)]
    found += [(f"network {n.name}", n.attrs.get("Labels"), n) for n in client.networks.list(filters=filters)]
    found += [(f"volume {v.name}", v.attrs.get("Labels"), v) for v in client.volumes.list(filters=filters)]
    for what, labels, obj in found:
        if not _pid_alive((labels or {}).get(LABEL_PID, "")):
            progress(f"sweeping {what} of a dead run ({(labels or {}).get(LABEL_RUN)})")
            with contextlib.suppress(Exception):
                obj.remove(**({} if what.startswith("network") else {"force": True}))


class ContainerRuntime:
    name = "docker"

    def create(self, topology: Topology, work_dir: Path) -> ContainerLab:
        """A lab not yet started: call up(); stop() and collect_logs() work whatever happened."""
        return ContainerLab(topology, work_dir)

    def start(self, topology: Topology, work_dir: Path) -> ContainerLab:
        return bring_up(self.create(topology, work_dir))
