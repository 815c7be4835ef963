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

This module is the lab itself; the nouns it uses live next to it: `box` (one container),
`cert_copy` (an agent's directory copied out of its volume), `sweep` (dead runs' leftovers),
and `core` (all that the process runtime shares: command lines, readiness, identities,
revocation, logs).
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zt.fsutil import write_secret
from zt.lab import cert_copy, core, edges, gen_watch, process, prometheus_config, ra_sources, secrets_scan, toxiproxy
from zt.lab.box import HARDENED, IMAGES, LABEL_PID, LABEL_RUN, Box, image, image_tag, testcontainers_defaults
from zt.lab.core import progress
from zt.lab.host_identities import LabError
from zt.lab.identity import LabIdentity
from zt.lab.prometheus import Prometheus
from zt.lab.runtime import bring_up
from zt.lab.sweep import sweep_stale
from zt.lab.topology import MESH_POLICY, POLICY_FILE, ServiceSpec, Topology

if TYPE_CHECKING:
    import docker
    from testcontainers.core.network import Network

__all__ = ["LABEL_PID", "LABEL_RUN", "ContainerLab", "ContainerRuntime", "sweep_stale"]

RA_ALIAS, CRL_ALIAS = "ra.zt.lab", "crl.zt.lab"
RA_PORT, CRL_PORT = 8443, 8444
PORTS = {"cpp": (8080, 9080), "java": (8081, 9081)}  # mTLS, metrics: the services' defaults
AGENT_METRICS_PORT = 9090  # an agent's --metrics-listen (Topology.agent_metrics), published on 127.0.0.1
PROMETHEUS_PORT = 9090  # the lab's Prometheus (Topology.prometheus), published on 127.0.0.1
AGENT_PID_FILE = "/tmp/agent.pid"  # on the agent container's own tmpfs
CA, CA_CRL, CRL, TRUST = "/var/lib/zt/ca", "/var/lib/zt/ca/crl", "/var/lib/zt/crl", "/var/lib/zt/trust"
TOKEN, CERTS, RUN = "/var/lib/zt/token", "/var/lib/zt/certs", "/run/zt"
POLICY = "/var/lib/zt/policy"  # the services' read-only view of the policy volume
# The one-shot that (re)writes the policy volume, mounted at TOKEN: a directory the RA image
# owns as zt, so a fresh volume starts out zt-owned. A new file renamed over the old one.
POLICY_WRITE = 'set -e; cd "$1"; printf "%s" "$ZT_POLICY" > .new; chmod 0644 .new; mv -f .new "$2"'
PUBLIC_CA_FILES = ("root.pem", "intermediate.pem", "bundle.pem", "bundle.pem.sha256")  # never a key
# The chaos lab (Topology(chaos=True), docs/chaos.md): toxiproxy in a container of our own base
# image (the zt-crl image with the pinned, host-built server mounted read-only), on both networks.
# It takes over the RA's and the publisher's aliases on `pki` (the RA's certificate names
# ra.zt.lab, so TLS through the proxy verifies as before); each proxy listens on its own port.
TOXIPROXY_API = 8474
TOXIPROXY_BIN = "/opt/toxiproxy"
PROXY_PORTS = {"agent-ra": RA_PORT, "agent-crl": CRL_PORT}  # the mesh and load proxies: 18000 + n, 28000 + n
# --store postgres (docs/scaling.md): the zt-postgres container on the run's `store` network.
PG_ALIAS, PG_PORT, PG_DATA = "postgres.zt.lab", 5432, "/var/lib/zt/pgdata"
STORES = ("sqlite", "postgres")
ENV_STORE = "ZT_STORE"  # ztca's and zt-ra's store variable, in every container that holds the CA


def ra_name(replica: int) -> str:
    """A replica's container and role name: `ra`, `ra-2`, ..."""
    return "ra" if replica == 1 else f"ra-{replica}"


def ra_alias(replica: int) -> str:
    """The name agents reach (and verify) a replica by: ra.zt.lab, ra-2.zt.lab, ..."""
    return RA_ALIAS if replica == 1 else f"ra-{replica}.zt.lab"


# The pod holder of a signal-reload service (_start_pod): PID 1 of the agent's and the service's
# shared PID namespace; SIGTERM ends it (PID 1 gets only the signals it handles).
POD_HOLD = "import signal, sys; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); signal.pause()"
# Chaos plan 6b: how long the lab waits for an agent to begin writing a generation before it
# kills it anyway (as zt.lab.process_runtime.MID_WRITE_WAIT_S).
MID_WRITE_WAIT_S = 12.0


class ContainerLab(core.LabCore):
    runtime_name = "docker"

    def __init__(self, topology: Topology, work_dir: Path) -> None:
        """Nothing is created yet (no engine call): stop() and collect_logs() work at any point.

        `ca_dir` holds only the public CA certificates, copied out (scenarios read intermediate.pem).
        """
        super().__init__(topology, work_dir)
        self.run = f"zt-{uuid.uuid4().hex[:8]}"
        self.labels = {LABEL_RUN: self.run, LABEL_PID: str(os.getpid()), "zt.lab.work_dir": str(work_dir)}
        self._docker: docker.DockerClient | None = None
        self.boxes: dict[str, Box] = {}
        self.networks: dict[str, Network] = {}
        self.volumes: list[str] = []
        self._stopped = False
        self._toxiproxy: toxiproxy.Toxiproxy | None = None
        # On PostgreSQL: the store's URL as the containers on the `store` network reach it (the
        # host does not: zt.lab.chaos_store reads the store through the RA container).
        self.store_url: str | None = None

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

    def _box(
        self,
        name: str,
        kind: str,
        command: list[str],
        *,
        mounts: list[tuple[str, str, str]],
        network: str | None,
        aliases: tuple[str, ...] = (),
        ports: tuple[int, ...] = (),
        entrypoint: list[str] | None = None,
        env: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Box:
        """Create (not start) a container of the run; the caller starts it."""
        _ = self.docker  # the engine answers, and testcontainers' settings are made before its import
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
        box.one_shot = True
        self._start(box)
        code = int(box.container.wait(timeout=timeout).get("StatusCode", -1))
        if code != 0:
            raise LabError(f"{box.name} exited with {code}; log tail:\n{box.log_tail()}")

    def _wait(self, what: str, box: Box, check: Callable[[], bool], timeout: float = 60.0) -> None:
        """The lab's one wait helper, watching the container: it fails at once if it stops."""
        process.wait_until(what, check, timeout=timeout, interval=0.2, proc=box)

    # -- bring-up ------------------------------------------------------------------------------

    def up(self) -> None:
        """Bring every component up, in order, waiting for real readiness (the caller stops)."""
        from testcontainers.core.network import Network

        if self.topology.store not in STORES:  # never a run that claims a store and runs on another
            raise LabError(f"store {self.topology.store!r}: one of {', '.join(STORES)}")
        if (self.ca_dir / "bundle.pem").exists():  # its identities would chain to another run's CA
            raise LabError(f"{self.work_dir} already holds a run; give each run a new work dir")
        self._preflight()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        for role in ("pki", "mesh", *(("store",) if self.on_postgres else ())):
            net = Network(docker_network_kw={"labels": self.labels})
            net.name = f"{self.run}-{role}"
            self.networks[role] = net.create()
        ca = [(self.volume("ca"), CA, "rw"), (self.volume("crl"), CA_CRL, "rw")]
        if self.on_postgres:
            self._start_postgres()
        progress(f"ca-init (trust domain {self.topology.trust_domain}; run {self.run})")
        init = self._box(
            "ca-init",
            "ra",
            [],
            entrypoint=["zt-ca-init"],
            network=self._ca_network(),
            mounts=[*ca, (self.volume("trust"), TRUST, "rw")],
            env={
                "ZT_TRUST_DOMAIN": self.topology.trust_domain,
                "ZT_SERVICES": "",
                "ZT_CRL_URL": f"http://{CRL_ALIAS}:{CRL_PORT}/crl",
                "ZT_CRL_VALIDITY": self.topology.crl_validity,
                **self._store_env(),
            },
        )
        self._run_once(init)
        self.ca_dir.mkdir(parents=True, exist_ok=True)
        for f in PUBLIC_CA_FILES:
            init.copy_file(f"{CA}/{f}", self.ca_dir / f)
        for s in self.topology.services:  # one-time tokens, straight into each agent's token volume
            self._run_once(
                self._box(
                    f"register-{s.name}",
                    "ra",
                    ["register", s.name, "--dir", CA, "--token-file", f"{TOKEN}/token"],
                    entrypoint=["ztca"],
                    network=self._ca_network(),
                    mounts=[*ca, (self.volume(f"token-{s.name}"), TOKEN, "rw")],
                    env=self._store_env(),
                )
            )
        progress(f"registered {', '.join(s.name for s in self.topology.services)}")
        self.set_policy(MESH_POLICY.read_text())
        if self.topology.chaos:
            self._start_toxiproxy()
        for replica in range(1, self.topology.ra_replicas + 1):
            self._start_ra(ca, replica)
        self._start_crl()
        for s in self.topology.services:
            self._start_agent(s)
        for s in self.topology.services:
            self._start_service(s)
        if self.topology.prometheus:
            self._start_prometheus()
        progress("lab is up (containers)")

    def _preflight(self) -> None:
        optional = {"prometheus": self.topology.prometheus, "postgres": self.on_postgres}
        kinds = [k for k in IMAGES if optional.get(k, True)]
        missing = [image(k) for k in kinds if not self.docker.images.list(name=image(k))]
        if missing:
            raise LabError(f"images missing: {', '.join(missing)}; build them: scripts/build-images.sh")
        labels = self.docker.images.get(image("ra")).labels or {}
        built = labels.get("org.opencontainers.image.revision", "?")[:12]
        dirty = " (dirty tree)" if labels.get("zt.dirty") == "true" else ""
        progress(f"images :{image_tag()} built from {built}{dirty}; scripts/build-images.sh rebuilds them")
        sweep_stale(self.docker)

    # -- the store: PostgreSQL in a container (Topology.store == "postgres") -----------------

    @property
    def on_postgres(self) -> bool:
        return self.topology.store == "postgres"

    def _ca_network(self) -> str | None:
        """The one-shot ztca containers reach the store's network on PostgreSQL, else none."""
        return "store" if self.on_postgres else None

    def _store_env(self) -> dict[str, str]:
        """ZT_STORE for every container that holds the CA (ztca and zt-ra read it), on PostgreSQL."""
        return {ENV_STORE: self.store_url} if self.store_url else {}

    def _start_postgres(self) -> None:
        """The zt-postgres image (Debian's postgresql on our base) on the `store` network, which
        only the RA replicas and the one-shot ztca containers join; no published port. Its data
        in a volume of the run; ready when pg_isready answers on its socket, then the database
        `zt` is created, as zt.lab.postgres does for the process runtime."""
        box = self._start(
            self._box(
                "postgres",
                "postgres",
                [],
                mounts=[(self.volume("pgdata"), PG_DATA, "rw")],
                network="store",
                aliases=(PG_ALIAS,),
            )
        )
        self._wait("postgres pg_isready", box, lambda: box.exec("pg_isready", "-h", "/tmp", "-U", "zt")[0] == 0)
        code, out = box.exec("psql", "-h", "/tmp", "-U", "zt", "-d", "postgres", "-X", "-q", "-c", "CREATE DATABASE zt")
        if code != 0:
            raise LabError(f"CREATE DATABASE zt in the postgres container failed ({code}): {out.strip()[-300:]}")
        self.store_url = f"postgresql://zt@{PG_ALIAS}:{PG_PORT}/zt"
        progress(f"PostgreSQL up in its container; store {self.store_url}")

    def _start_ra(self, ca: list[tuple[str, str, str]], replica: int = 1) -> None:
        """Replica 1 is `ra` (alias ra.zt.lab, unless toxiproxy answers for it); on PostgreSQL
        replica n is `ra-n` (alias ra-n.zt.lab), started one after another (each writes the RA's
        TLS certificate into the shared CA volume at start, as on processes). Agents verify a
        replica by its alias; the host (client identities) by 127.0.0.1. On PostgreSQL a replica
        starts on the `store` network and joins `pki` at once, before it can answer: the engine
        (API 1.41) attaches one network at creation."""
        name = ra_name(replica)
        alias = ra_alias(replica)
        aliases = () if self.topology.chaos and replica == 1 else (alias,)
        argv = [
            "--ca-dir",
            CA,
            *(("--store", self.store_url) if self.store_url else ()),  # zt-ra's own variable is ZT_RA_STORE
            "--listen",
            f"0.0.0.0:{RA_PORT}",
            "--server-name",
            alias,
            "--server-name",
            "127.0.0.1",
            *self.topology.ra_args(),
        ]
        if self.on_postgres:
            box = self._start(
                self._box(name, "ra", argv, mounts=ca, network="store", ports=(RA_PORT,), env=self._store_env())
            )
            self.networks["pki"].connect(str(box.container.id), network_aliases=[name, *aliases])
        else:
            box = self._start(self._box(name, "ra", argv, mounts=ca, network="pki", aliases=aliases, ports=(RA_PORT,)))
        self._wait(f"{name} /v1/status", box, lambda: core.ra_status_ok(self._ra_url(name), self.bundle()))

    def _start_crl(self) -> None:
        box = self._start(
            self._box(
                "crl",
                "crl",
                ["--crl-dir", CRL, "--listen", f"0.0.0.0:{CRL_PORT}"],
                mounts=[(self.volume("crl"), CRL, "ro")],
                network="pki",
                aliases=() if self.topology.chaos else (CRL_ALIAS,),
                ports=(CRL_PORT,),
            )
        )
        self._wait("zt-crl /healthz", box, lambda: core.http_ok(self.crl_url() + "/healthz"))

    def _start_pod(self, s: ServiceSpec) -> Box:
        """The holder of a signal-reload service's PID namespace (Kubernetes' pause container):
        the agent and its service both join it, so the agent's SIGHUP reaches the service, and
        neither is the namespace's init: an agent killed by SIGKILL (chaos plan 6b) leaves its
        service running, as on the process runtime. It only waits for SIGTERM."""
        return self._start(
            self._box(
                f"pod-{s.name}",
                "agent",
                ["-c", POD_HOLD],
                entrypoint=["python3"],
                network=None,
                mounts=[],
            )
        )

    def _start_agent(self, s: ServiceSpec) -> None:
        argv = core.agent_args(
            self.topology,
            s,
            ra_url=f"https://{RA_ALIAS}:{RA_PORT}",
            bundle=f"{TRUST}/bundle.pem",
            bundle_sha256=core.bundle_pin(self.ca_dir),
            token=f"{TOKEN}/token",
            out=CERTS,
            pid_file=f"{RUN}/{s.name}.pid",
            metrics_listen=f"0.0.0.0:{AGENT_METRICS_PORT}",
            agent_pid_file=AGENT_PID_FILE,
        )
        # Every other replica by its own alias, direct (as on processes: only the first is proxied).
        argv += [
            a for r in range(2, self.topology.ra_replicas + 1) for a in ("--ra", f"https://{ra_alias(r)}:{RA_PORT}")
        ]
        mounts = [
            (self.volume("trust"), TRUST, "ro"),
            (self.volume(f"token-{s.name}"), TOKEN, "ro"),
            (self.volume(f"certs-{s.name}"), CERTS, "rw"),
        ]
        if s.reload == "signal":
            mounts.append((self.volume(f"run-{s.name}"), RUN, "ro"))
        ports = (AGENT_METRICS_PORT,) if self.topology.agent_metrics else ()
        extra: dict[str, Any] = {}
        if s.reload == "signal":
            extra["pid_mode"] = f"container:{self._start_pod(s).container.id}"
        box = self._start(
            self._box(f"agent-{s.name}", "agent", argv, mounts=mounts, network="pki", ports=ports, **extra)
        )
        self._wait_agent(s, box)

    def _wait_agent(self, s: ServiceSpec, box: Box) -> None:
        self._wait(
            f"agent-{s.name} to write identity and CRL",
            box,
            lambda: box.exec("test", "-s", f"{CERTS}/current/svid.json", "-a", "-s", f"{CERTS}/crl.pem")[0] == 0,
        )
        if self.topology.agent_metrics:
            url = self.agent_metrics_url(s.name)
            self._wait(f"agent-{s.name} /healthz", box, lambda: core.http_ok(url + "/healthz"))

    def _start_service(self, s: ServiceSpec) -> None:
        tls, metrics = PORTS[s.language]
        by_signal = s.reload == "signal"  # the agent's SIGHUP must reach us: join the pod's PID namespace
        argv = core.service_args(
            name=s.name,
            cert_dir=CERTS,
            listen=f"0.0.0.0:{tls}",
            metrics_listen=f"0.0.0.0:{metrics}",
            expect_peer=self.topology.spiffe_id(s.expect_peer),
            crl_stale=self.topology.crl_stale_mode(s.name),
            pid_file=f"{RUN}/{s.name}.pid" if by_signal else None,
            no_reload=s.name in self.topology.no_reload,
            policy=f"{POLICY}/{POLICY_FILE}",
        )
        mounts = [(self.volume(f"certs-{s.name}"), CERTS, "ro"), (self.volume("policy"), POLICY, "ro")]
        extra: dict[str, Any] = {}
        if by_signal:
            mounts.append((self.volume(f"run-{s.name}"), RUN, "rw"))
            extra["pid_mode"] = f"container:{self.boxes[f'pod-{s.name}'].container.id}"
        box = self._start(
            self._box(
                s.name,
                s.language,
                argv,
                mounts=mounts,
                network="mesh",
                aliases=(f"{s.name}.zt.lab",),
                ports=(tls, metrics),
                **extra,
            )
        )
        core.wait_service(
            s.name,
            box,
            self.metrics_url(s.name),
            "127.0.0.1",
            box.port(tls),
            self.bundle(),
            self.client_identity("lab-probe"),
        )

    def proxy_port(self, proxy: str) -> int:
        """The port a toxiproxy proxy listens on inside its container."""
        if proxy in PROXY_PORTS:
            return PROXY_PORTS[proxy]
        kind, _, service = proxy.partition("-")
        n = [s.name for s in self.topology.services].index(service)
        return (18000 if kind == "mesh" else 28000) + n

    def _start_toxiproxy(self) -> None:
        """toxiproxy-server in a container on both networks, one proxy per edge; the upstreams
        (by their role names, `ra`, `service-b`) start later."""
        binary = toxiproxy.server_binary()
        proxies = {e.proxy: e for e in edges.chaos_edges(self.topology)}
        published = tuple(self.proxy_port(p) for p in proxies if p.startswith("load-"))
        box = self._box(
            "toxiproxy",
            "crl",
            ["-host", "0.0.0.0", "-port", str(TOXIPROXY_API), "-seed", str(random.randrange(2**31))],
            entrypoint=[f"{TOXIPROXY_BIN}/{binary.name}"],
            mounts=[(str(binary.parent), TOXIPROXY_BIN, "ro")],
            network="pki",
            aliases=(RA_ALIAS, CRL_ALIAS),
            ports=(TOXIPROXY_API, *published),
        )
        self._start(box)
        self.networks["mesh"].connect(str(box.container.id), network_aliases=["toxiproxy"])
        client = toxiproxy.Toxiproxy(f"http://127.0.0.1:{box.port(TOXIPROXY_API)}")
        self._toxiproxy = client
        self._wait("toxiproxy /version", box, lambda: bool(client.version()))
        for name, e in proxies.items():
            upstream = {"ra": f"ra:{RA_PORT}", "crl": f"crl:{CRL_PORT}"}.get(e.upstream)
            if upstream is None:
                service = e.upstream.split(":")[0]
                upstream = f"{service}:{PORTS[self.topology.service(service).language][0]}"
            client.create_proxy(name, f"0.0.0.0:{self.proxy_port(name)}", upstream)
        progress(f"toxiproxy proxies: {', '.join(sorted(proxies))}")

    def _start_prometheus(self) -> None:
        """The zt-prometheus image on both networks (the RA, publisher and agents on `pki`, the
        services on `mesh`), scraping each by its alias; the RA's TLS verified against the
        bundle and its alias. Ready when every component's target is up."""
        targets = [
            prometheus_config.ScrapeTarget("zt-ra", f"{RA_ALIAS}:{RA_PORT}", f"{TRUST}/bundle.pem", RA_ALIAS),
            prometheus_config.ScrapeTarget("zt-crl", f"{CRL_ALIAS}:{CRL_PORT}"),
        ]
        if self.topology.agent_metrics:
            targets += [
                prometheus_config.ScrapeTarget(f"agent-{s.name}", f"agent-{s.name}:{AGENT_METRICS_PORT}")
                for s in self.topology.services
            ]
        targets += [
            prometheus_config.ScrapeTarget(s.name, f"{s.name}:{PORTS[s.language][1]}") for s in self.topology.services
        ]
        box = self._box(
            "prometheus",
            "prometheus",
            prometheus_config.server_args(
                "/tmp/prometheus/prometheus.yml", "/tmp/prometheus/data", f"0.0.0.0:{PROMETHEUS_PORT}"
            ),
            mounts=[(self.volume("trust"), TRUST, "ro")],
            network="pki",
            ports=(PROMETHEUS_PORT,),
            env={"ZT_PROMETHEUS_CONFIG": prometheus_config.render(targets, self.topology.prometheus_interval)},
        )
        self._start(box)
        self.networks["mesh"].connect(str(box.container.id))
        server = Prometheus(self.prometheus_url())
        self._wait("prometheus /-/ready", box, server.ready)
        server.wait_all_up(set(prometheus_config.jobs(self.topology)))

    # -- the mesh policy; the RA from two sources; an agent on a given bundle (Milestone 5) -----

    def set_policy(self, text: str) -> None:
        """A one-shot container writes the policy volume the services mount read-only (a new
        file renamed over the old one; the services notice and reload it, no restart)."""
        n = sum(name.startswith("policy-") for name in self.boxes)
        self._run_once(
            self._box(
                f"policy-{n + 1}",
                "ra",
                ["-c", POLICY_WRITE, "policy-write", TOKEN, POLICY_FILE],
                entrypoint=["sh"],
                network=None,
                mounts=[(self.volume("policy"), TOKEN, "rw")],
                env={"ZT_POLICY": text},
            )
        )

    def _exec_env(self, box: str, argv: list[str], env: dict[str, str]) -> tuple[int, str]:
        r = self.boxes[box].container.exec_run(argv, environment=env, demux=False)
        out = r.output if isinstance(r.output, bytes) else b""
        return int(r.exit_code or 0), out.decode(errors="replace")

    def ra_issue(self, token: str, spiffe_id: str, *, source: int) -> ra_sources.RaAnswer:
        """Source 0: the host, through the RA's published port. Source 1: the container of
        service-a's agent, on the `pki` network (its own address, as the agents reach the RA)."""
        if source == 0:
            return ra_sources.issue(self.ra_url(), self.bundle(), token, spiffe_id, source="host")
        env = {
            "ZT_URL": f"https://{RA_ALIAS}:{RA_PORT}",
            "ZT_BUNDLE": f"{TRUST}/bundle.pem",
            "ZT_TOKEN": token,
            "ZT_CSR": ra_sources.csr_pem(spiffe_id),
        }
        code, out = self._exec_env("agent-service-a", ["python3", "-c", ra_sources.IN_CONTAINER_CLIENT], env)
        where = "container agent-service-a"
        try:
            doc = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return ra_sources.RaAnswer(where, None, "client_failed", f"exit {code}: {out[-300:]}", None, None, 0.0)
        return ra_sources.answer_from(where, doc["status"], doc["headers"], doc["text"], float(doc["elapsed_ms"]))

    def agent_once(self, name: str, token_file: Path, bundle_pem: bytes, pin: str) -> tuple[int, str]:
        """The agent image's zt-agent, once, inside service-a's agent container (its tmpfs /tmp),
        on `bundle_pem` pinned to `pin`, with the token from the host's `token_file`."""
        d = f"/tmp/agent-once-{name}"
        prepare = (
            "import os, pathlib; d = pathlib.Path(os.environ['D']); d.mkdir(mode=0o700, exist_ok=True); "
            "(d / 'bundle.pem').write_bytes(os.environ['B'].encode('latin-1')); t = d / 'token'; "
            "t.touch(mode=0o600); t.write_text(os.environ['T'])"
        )
        env = {"D": d, "B": bundle_pem.decode("latin-1"), "T": token_file.read_text().strip()}
        code, out = self._exec_env("agent-service-a", ["python3", "-c", prepare], env)
        if code != 0:
            raise LabError(f"could not prepare {d} in agent-service-a: {out[-300:]}")
        return self._exec_env(
            "agent-service-a",
            [
                "zt-agent",
                *("--ra", f"https://{RA_ALIAS}:{RA_PORT}", "--bundle", f"{d}/bundle.pem", "--bundle-sha256", pin),
                *("--token-file", f"{d}/token", "--service", name, "--out", f"{d}/out", "--once", "--no-crl"),
            ],
            {},
        )

    # -- faults: components stopped and started again ---------------------------------------

    def stop_component(self, name: str) -> None:
        """Stop a component's container (only "crl", the publisher, so far); it stays, to start again."""
        box = self._component(name)
        progress(f"stopping {box.name} as a fault")
        box.container.stop(timeout=5)

    def start_component(self, name: str) -> None:
        """Start the stopped container again and wait until it answers. The engine may publish
        it on another host port, so the cached one is forgotten (agents use its alias)."""
        box = self._component(name)
        progress(f"starting {box.name} again")
        box.container.start()
        box.ports.clear()
        box.container.reload()
        self._wait("zt-crl /healthz", box, lambda: core.http_ok(self.crl_url() + "/healthz"))

    def kill_component(self, name: str) -> dict[str, Any]:
        """SIGKILL a component's process ("ra" or "agent-<service>"), as a crash would (chaos
        plan 6): the host PID of its container's process, and how it died. Its container, volumes
        and network aliases stay, to start again.

        The RA gets `docker kill --signal KILL`. An agent is killed mid-write: the lab watches its
        certificate volume from the host (the engine's mount point of the volume, as root reads
        it; for up to MID_WRITE_WAIT_S) and the moment a new generation directory exists without
        svid.json it sends SIGKILL to the agent's host PID itself: a round trip through the
        engine's API takes longer than the write does. The engine then reports exit code 137
        (128 + SIGKILL); `exit_code` gives it as a process's (-9), as the process runtime does."""
        box = self._killable(name)
        box.container.reload()
        pid = int(box.container.attrs["State"]["Pid"])
        writing = out = None
        if name.startswith("agent-"):
            out = self._volume_dir(f"certs-{name.removeprefix('agent-')}")
            if not Path(f"/proc/{pid}").exists():
                raise LabError(f"kill_component({name!r}): pid {pid} is not on this host (the engine is not local)")
            writing = gen_watch.wait_for_write(out, MID_WRITE_WAIT_S, Path(f"/proc/{pid}").exists)
        progress(f"kill -9 {box.name} (pid {pid}) as a fault" + (f", writing {writing}" if writing else ""))
        from docker.errors import APIError

        # Stamped as the kill is asked for, not after the engine's answer to it nor after its
        # wait for the exit (about 0.8 s): an agent may fail over to another replica within
        # either, and the fault window starts at the kill. (Stamped after `kill()` returned, CI
        # once saw an agent's failover 0.17 s before the window opened, and the check failed.)
        killed_at = time.time()
        try:
            if out is not None:
                os.kill(pid, signal.SIGKILL)
            else:
                box.container.kill(signal="SIGKILL")
        except (OSError, APIError) as e:
            raise LabError(f"kill_component({name!r}): {e}") from e
        status = int(box.container.wait(timeout=30).get("StatusCode", -1))
        answer: dict[str, Any] = {
            "killed_at": killed_at,
            "killed_pid": pid,
            "container_exit_code": status,
            "exit_code": -(status - 128) if status > 128 else status,
        }
        if out is not None:
            answer["writing"] = writing
            answer["files_at_kill"] = sorted(p.name for p in (out / writing).iterdir()) if writing else None
        return answer

    def restart_component(self, name: str) -> int:
        """Start a killed component's container again (same volumes, aliases, command) and wait
        until it answers: the host PID of its new process. The engine may publish it on other
        host ports, so the cached ones are forgotten."""
        box = self._known(name)
        if box.exit_state() is None:
            raise LabError(f"restart_component: {name} is running already")
        progress(f"starting {box.name} again")
        box.container.start()
        box.ports.clear()
        if name.startswith("agent-"):
            self._wait_agent(self.topology.service(name.removeprefix("agent-")), box)
        else:
            self._wait(f"{name} /v1/status", box, lambda: core.ra_status_ok(self._ra_url(name), self.bundle()))
        box.container.reload()
        return int(box.container.attrs["State"]["Pid"])

    def _volume_dir(self, what: str) -> Path:
        """The host's view of one of the run's volumes (the engine's mount point of it)."""
        path = Path(self.docker.volumes.get(self.volume(what)).attrs["Mountpoint"])
        if not path.is_dir():
            raise LabError(f"volume {what} is not readable at {path} here (the engine is not local, or not root)")
        return path

    def _known(self, name: str) -> Box:
        if name not in self._killables():
            raise LabError(f"kill_component: only {', '.join(self._killables())}, not {name!r}")
        if name not in self.boxes:
            raise LabError(f"kill_component: the lab is not up, it has no {name}")
        return self.boxes[name]

    def _killable(self, name: str) -> Box:
        box = self._known(name)
        if box.exit_state() is not None:
            raise LabError(f"kill_component: {name} is not running")
        return box

    def _killables(self) -> list[str]:
        return ["ra", *(f"agent-{s.name}" for s in self.topology.services)]

    def _component(self, name: str) -> Box:
        if name != "crl" or "crl" not in self.boxes:
            raise LabError(f"only a running lab's 'crl' (the publisher) can be stopped and started, not {name!r}")
        return self.boxes["crl"]

    # -- what scenarios use ----------------------------------------------------------------------

    def _published(self, name: str, port: int) -> int:
        return self.boxes[name].port(port)

    def service_url(self, service: str, *, from_service: bool = False) -> str:
        """In a chaos lab, through toxiproxy: its mesh proxy for the other service's /call, its
        published load proxy for the host."""
        tls = PORTS[self.topology.service(service).language][0]
        if self.topology.chaos:
            if from_service:
                return f"https://toxiproxy:{self.proxy_port(f'mesh-{service}')}"
            return f"https://127.0.0.1:{self._published('toxiproxy', self.proxy_port(f'load-{service}'))}"
        if from_service:
            return f"https://{service}:{tls}"
        return f"https://127.0.0.1:{self._published(service, tls)}"

    def metrics_url(self, service: str) -> str:
        metrics = PORTS[self.topology.service(service).language][1]
        return f"http://127.0.0.1:{self._published(service, metrics)}"

    def ra_url(self) -> str:
        return self._ra_url("ra")

    def _ra_url(self, replica: str) -> str:
        """A replica ("ra", "ra-2") through its port published on 127.0.0.1."""
        return f"https://127.0.0.1:{self._published(replica, RA_PORT)}"

    def crl_url(self) -> str:
        return f"http://127.0.0.1:{self._published('crl', CRL_PORT)}"

    def agent_metrics_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self._published(f'agent-{service}', AGENT_METRICS_PORT)}"

    def toxiproxy(self) -> toxiproxy.Toxiproxy:
        if self._toxiproxy is None:
            raise LabError("this lab runs no toxiproxy (Topology.chaos)")
        return self._toxiproxy

    def prometheus_url(self) -> str:
        if "prometheus" not in self.boxes:
            raise LabError("this lab runs no Prometheus (Topology.prometheus)")
        return f"http://127.0.0.1:{self._published('prometheus', PROMETHEUS_PORT)}"

    def rotate(self, service: str) -> None:
        """A manual rotation: SIGUSR1 to the agent, its container's process
        (`docker kill --signal USR1`)."""
        try:
            self.boxes[f"agent-{service}"].container.kill(signal="SIGUSR1")
        except Exception as e:
            raise LabError(f"cannot signal agent-{service}: {e}") from e

    def component_log(self, name: str) -> str:
        """A container's log as the engine keeps it (stdout and stderr)."""
        return self.boxes[name].logs().decode(errors="replace") if name in self.boxes else ""

    def agent_identity(self, service: str) -> LabIdentity:
        """Copied out of the agent's volume at each call, so serials are the current ones."""
        local = cert_copy.sync_from(self.boxes[f"agent-{service}"], CERTS, self.work_dir / "certs" / service)
        return LabIdentity(service, self.topology.spiffe_id(service), local)

    def ztca(self, *args: str) -> dict[str, Any]:
        """`ztca VERB --dir <CA volume> --json ...` inside the RA container (which holds the CA)."""
        verb, *rest = args
        # stdout is the JSON answer; stderr holds ztca's JSON log lines (kept in logs/ztca.log).
        code, out, err = self.boxes["ra"].exec_split("ztca", verb, "--dir", CA, "--json", *rest)
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / "ztca.log").open("a", encoding="utf-8") as f:
            f.write(err)
        if code != 0:
            raise LabError(f"ztca {verb} in the RA container failed ({code}): {(err + out).strip()[-500:]}")
        return dict(json.loads(out)) if out.strip() else {}

    def read_store(self, script: str, queries: list[str]) -> dict[str, Any]:
        """Run zt.lab.chaos_store's reader in the RA container, on its store (the CA volume's
        SQLite file, or PostgreSQL through the RA's ZT_STORE): its JSON answer."""
        code, out, err = self.boxes["ra"].exec_split("python3", "-c", script, json.dumps(queries), f"{CA}/zt.db")
        if code != 0:
            raise LabError(f"reading the store in the RA container failed ({code}): {(err + out).strip()[-500:]}")
        return dict(json.loads(out.strip().splitlines()[-1]))

    def ztca_exit(self, *args: str) -> tuple[int, str]:
        return self.boxes["ra"].exec("ztca", *[CA if a == core.CA_DIR else a for a in args])

    def ca_file(self, name: str) -> bytes:
        with self.boxes["ra"].read_tar(f"{CA}/{name}") as tar:
            member = tar.next()
            data = tar.extractfile(member) if member is not None else None
            if data is None:
                raise LabError(f"{CA}/{name} in the RA container is not a regular file")
            return data.read()

    def _runtime_secrets(self) -> list[secrets_scan.Secret]:
        """The CA volume (keys, admin token) through the RA, each agent's volumes through it."""
        found = []
        places = [("ra", CA)] + [(f"agent-{s.name}", d) for s in self.topology.services for d in (CERTS, TOKEN)]
        for box, path in places:
            if box in self.boxes:
                with self.boxes[box].read_tar(path) as tar:
                    found += secrets_scan.in_tar(tar, f"{box}:{path}")
        return found

    def register(self, name: str, token_file: Path) -> None:
        """Registered in the RA container (which holds the CA); the token comes back as JSON and
        goes straight into a 0600 file on the host. The RA's certificate also names 127.0.0.1,
        so the host's agent bootstraps over the published port."""
        write_secret(token_file, str(self.ztca("register", name)["token"]).encode() + b"\n")

    def reregister(self, service: str) -> dict[str, Any]:
        """A one-shot `ztca register --reenable` on the CA volumes writes the new token into the
        agent's token volume (mounted read-only in the agent, which sees the file replaced)."""
        n = sum(name.startswith(f"reregister-{service}") for name in self.boxes)
        self._run_once(
            self._box(
                f"reregister-{service}-{n + 1}",
                "ra",
                ["register", service, "--dir", CA, "--token-file", f"{TOKEN}/token", "--reenable"],
                entrypoint=["ztca"],
                network=self._ca_network(),
                env=self._store_env(),
                mounts=[
                    (self.volume("ca"), CA, "rw"),
                    (self.volume("crl"), CA_CRL, "rw"),
                    (self.volume(f"token-{service}"), TOKEN, "rw"),
                ],
            )
        )
        return {"service": service, "spiffe_id": self.topology.spiffe_id(service), "token_file": f"{TOKEN}/token"}

    def _component_logs(self, dest: Path) -> list[Path]:
        """One file per container: stdout and stderr as the engine kept them."""
        copied = []
        for name, box in self.boxes.items():
            target = dest / f"{name}.log"
            try:
                target.write_bytes(box.log_lines())
            except Exception as e:  # noqa: BLE001 - a lost log must not hide the others
                target.write_text(f"(logs of {name} unavailable: {e})\n")
            copied.append(target)
        return copied

    def _remove_volume(self, name: str) -> None:
        self.docker.volumes.get(name).remove(force=True)

    def stop(self) -> None:
        """Remove the run's containers (newest first), network and volumes; idempotent."""
        if self._toxiproxy is not None:
            self._toxiproxy.close()
            self._toxiproxy = None
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
        progress(
            f"removed run {self.run}: {len(self.boxes)} containers, {len(self.networks)} networks, "
            f"{len(self.volumes)} volumes" + (f"; left over: {'; '.join(failed)}" if failed else "")
        )


class ContainerRuntime:
    name = "docker"

    def create(self, topology: Topology, work_dir: Path) -> ContainerLab:
        """A lab not yet started: call up(); stop() and collect_logs() work whatever happened."""
        return ContainerLab(topology, work_dir)

    def start(self, topology: Topology, work_dir: Path) -> ContainerLab:
        return bring_up(self.create(topology, work_dir))
