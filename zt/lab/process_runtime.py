"""The process runtime: every component a local process on 127.0.0.1.

Init order as a real deployment does it: `ztca init`, register the services (one-time tokens
in 0600 files), start the RA and the CRL publisher, run each agent (bootstrap with its token,
then keep renewing), then start each service on the files its agent wrote. Each component
has its own directory, log file and ports. Readiness is real: the RA's /v1/status over TLS,
the publisher's /healthz, the agents' files, each service's /healthz plus an mTLS handshake.
Teardown stops everything by PID, in reverse order, also after a failure. What the test
reads of the CA (issued certificates, revocations) goes through `ztca --json`, as in the
container runtime (zt.lab.core).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from zt.lab import (
    core,
    edges,
    gen_watch,
    host_identities,
    postgres,
    process,
    prometheus_config,
    ra_sources,
    services,
    toxiproxy,
)
from zt.lab.core import progress
from zt.lab.identity import LabIdentity
from zt.lab.ports import free_port
from zt.lab.prometheus import Prometheus
from zt.lab.runtime import bring_up
from zt.lab.topology import MESH_POLICY, POLICY_FILE, ServiceSpec, Topology

__all__ = ["ProcessLab", "ProcessRuntime", "progress"]

# Two sources the RA tells apart (Milestone 5's lockout): Linux routes all of 127.0.0.0/8 to lo.
RA_SOURCES = ("127.0.0.2", "127.0.0.3")
# Chaos plan 6b: how long the lab waits for an agent to begin writing a generation before it
# kills it anyway (the chaos lab's agents renew every 6-9 s).
MID_WRITE_WAIT_S = 12.0
# ztca's and zt-ra's store variable (docs/scaling.md); the lab sees the system from outside only.
ENV_STORE = "ZT_STORE"


def python_cmd(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


class ProcessLab(core.LabCore):
    runtime_name = "process"

    def __init__(self, topology: Topology, work_dir: Path) -> None:
        super().__init__(topology, work_dir)
        self.run_dir = work_dir / "run"
        self.procs: list[process.Proc] = []
        self.ports: dict[str, int] = {}
        self.proxy_ports: dict[str, int] = {}  # toxiproxy's listener per edge proxy (Topology.chaos)
        self._toxiproxy: toxiproxy.Toxiproxy | None = None
        self._pg: postgres.PostgresServer | None = None  # Topology.store == "postgres"
        self.store_url: str | None = None

    # -- the CA, on the host ---------------------------------------------------------------------

    def ztca(self, *args: str) -> dict[str, Any]:
        return host_identities.host_ztca(self.ca_dir, *args, log=self.logs / "ztca.log", env=self.store_env())

    def store_env(self) -> dict[str, str]:
        """ZT_STORE for every ztca and RA of a lab on PostgreSQL (docs/scaling.md)."""
        return {ENV_STORE: self.store_url} if self.store_url else {}

    def ztca_exit(self, *args: str) -> tuple[int, str]:
        argv = python_cmd("zt.cli.ztca", *[str(self.ca_dir) if a == core.CA_DIR else a for a in args])
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={**os.environ, **self.store_env()})
        return r.returncode, r.stdout + r.stderr

    def ca_file(self, name: str) -> bytes:
        return (self.ca_dir / name).read_bytes()

    def register(self, name: str, token_file: Path) -> None:
        self.ztca("register", name, "--token-file", str(token_file))  # ztca writes it 0600

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> process.Proc:
        progress(f"starting {name}")
        p = process.start(name, argv, self.logs / f"{name}.log", env=env, cwd=self.work_dir)
        self.procs.append(p)
        return p

    # -- bring-up ------------------------------------------------------------------------------

    def up(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(exist_ok=True)
        for name in ("ra", "crl", *[f"{s.name}:{kind}" for s in self.topology.services for kind in ("tls", "metrics")]):
            self.ports[name] = free_port()
        if self.topology.agent_metrics:
            for s in self.topology.services:
                self.ports[f"{s.name}:agent-metrics"] = free_port()
        for n in range(2, self.topology.ra_replicas + 1):
            self.ports[f"ra-{n}"] = free_port()
        if self.topology.store == "postgres":
            progress("starting PostgreSQL (zt.lab.postgres)")
            self._pg = postgres.start()
            self.store_url = self._pg.create_database("zt")
        if self.topology.chaos:
            self._start_toxiproxy()
        progress(f"ztca init (trust domain {self.topology.trust_domain})")
        self.ztca(
            "init",
            "--trust-domain",
            self.topology.trust_domain,
            "--crl-url",
            self._agent_crl_url() + "/crl",
            "--crl-validity",
            self.topology.crl_validity,
        )
        tokens = {}
        for s in self.topology.services:
            tokens[s.name] = self.run_dir / f"{s.name}.token"
            self.register(s.name, tokens[s.name])
        progress(f"registered {', '.join(tokens)}")
        self.set_policy(MESH_POLICY.read_text())
        for replica in range(1, self.topology.ra_replicas + 1):
            self._start_ra(replica)
        self._start_crl()
        for s in self.topology.services:
            self._start_agent(s, tokens[s.name])
        for s in self.topology.services:
            self._start_service(s)
        if self.topology.prometheus:
            self._start_prometheus()
        progress("lab is up")

    def _start_toxiproxy(self) -> None:
        """The real toxiproxy server on loopback, first of all (the CRL URL in every certificate
        names its proxy), with one proxy per edge; the proxies' upstreams start later."""
        port = free_port()
        # Its jitter and toxicity draws follow the run's seed (the lab fixture seeds `random`).
        proc, client = toxiproxy.start_server(port, self.logs / "toxiproxy.log", random.randrange(2**31), self.work_dir)
        self.procs.insert(0, proc)  # stopped last
        self._toxiproxy = client
        progress(f"toxiproxy on 127.0.0.1:{port}")
        for e in edges.chaos_edges(self.topology):
            if e.proxy in self.proxy_ports:
                continue
            self.proxy_ports[e.proxy] = free_port()
            client.create_proxy(
                e.proxy, f"127.0.0.1:{self.proxy_ports[e.proxy]}", f"127.0.0.1:{self.ports[e.upstream]}"
            )
        progress(f"toxiproxy proxies: {', '.join(sorted(self.proxy_ports))}")

    def toxiproxy(self) -> toxiproxy.Toxiproxy:
        if self._toxiproxy is None:
            raise host_identities.LabError("this lab runs no toxiproxy (Topology.chaos)")
        return self._toxiproxy

    def _via(self, proxy: str, direct_port: int) -> int:
        """The port a client uses: the edge's proxy in a chaos lab, else the component's own."""
        return self.proxy_ports[proxy] if self.topology.chaos else direct_port

    def _agent_ra_url(self) -> str:
        return f"https://127.0.0.1:{self._via('agent-ra', self.ports['ra'])}"

    def _agent_ra_urls(self) -> list[str]:
        """Every replica, the first through its edge proxy in a chaos lab, the others direct."""
        n = self.topology.ra_replicas
        return [self._agent_ra_url(), *(f"https://127.0.0.1:{self.ports[f'ra-{i}']}" for i in range(2, n + 1))]

    def _agent_crl_url(self) -> str:
        return f"http://127.0.0.1:{self._via('agent-crl', self.ports['crl'])}"

    def _start_ra(self, replica: int = 1) -> None:
        """Replica 1 is "zt-ra" on port "ra"; with PostgreSQL, replica n is "zt-ra-n" on "ra-n",
        started one after another (each writes the RA's TLS certificate into the shared CA
        directory at start, as tests/e2e/test_store_postgres.py does)."""
        key = "ra" if replica == 1 else f"ra-{replica}"
        store = ["--store", self.store_url] if self.store_url else []
        p = self._start(
            "zt-ra" if replica == 1 else f"zt-ra-{replica}",
            python_cmd(
                "zt.ra.main",
                "--ca-dir",
                str(self.ca_dir),
                *store,
                "--listen",
                f"127.0.0.1:{self.ports[key]}",
                *self.topology.ra_args(),
            ),
        )
        url = f"https://127.0.0.1:{self.ports[key]}"
        process.wait_until(f"{p.name} /v1/status", lambda: core.ra_status_ok(url, self.bundle()), timeout=30, proc=p)

    def _start_crl(self) -> None:
        p = self._start(
            "zt-crl",
            python_cmd("zt.crl.main", "--ca-dir", str(self.ca_dir), "--listen", f"127.0.0.1:{self.ports['crl']}"),
        )
        process.wait_until("zt-crl /healthz", lambda: core.http_ok(self.crl_url() + "/healthz"), timeout=30, proc=p)

    def cert_dir(self, service: str) -> Path:
        return self.work_dir / "certs" / service

    def pid_file(self, service: str) -> Path:
        return self.work_dir / f"{service}.pid"

    def agent_pid_file(self, service: str) -> Path:
        return self.work_dir / f"agent-{service}.pid"

    def _start_agent(self, s: ServiceSpec, token: Path) -> None:
        out = self.cert_dir(s.name)
        argv = python_cmd(
            "zt.agent.main",
            *core.agent_args(
                self.topology,
                s,
                ra_url=self._agent_ra_urls()[0],
                bundle=str(self.bundle()),
                bundle_sha256=core.bundle_pin(self.ca_dir),
                token=str(token),
                out=str(out),
                pid_file=str(self.pid_file(s.name)),
                metrics_listen=f"127.0.0.1:{self.ports.get(f'{s.name}:agent-metrics')}",
                agent_pid_file=str(self.agent_pid_file(s.name)),
            ),
            *[a for url in self._agent_ra_urls()[1:] for a in ("--ra", url)],
        )
        p = self._start(f"agent-{s.name}", argv)
        process.wait_until(
            f"agent-{s.name} to write identity and CRL",
            lambda: (out / "svid.json").exists() and (out / "crl.pem").exists(),
            timeout=60,
            proc=p,
        )
        if self.topology.agent_metrics:
            url = self.agent_metrics_url(s.name)
            process.wait_until(f"agent-{s.name} /healthz", lambda: core.http_ok(url + "/healthz"), timeout=30, proc=p)

    def _start_service(self, s: ServiceSpec) -> None:
        progress(f"starting {s.name} ({s.language})")
        svc = services.start_service(
            s.name,
            s.name,
            self.cert_dir(s.name),
            self.work_dir,
            expect_peer=self.topology.spiffe_id(s.expect_peer),
            crl_stale=self.topology.crl_stale_mode(s.name),
            tls_port=self.ports[f"{s.name}:tls"],
            metrics_port=self.ports[f"{s.name}:metrics"],
            extra=("--no-reload",) if s.name in self.topology.no_reload else (),
            policy=self.policy_file(),
        )
        self.procs.append(svc.proc)
        services.wait_ready(svc, self.bundle(), self.client_identity("lab-probe"))

    def _start_prometheus(self) -> None:
        """Debian's prometheus binary, with the lab's own config, data directory and loopback
        port (never the Debian service's); ready when every component's target is up."""
        binary = shutil.which("prometheus")
        if binary is None:
            raise host_identities.LabError(
                "no prometheus binary: install Debian's prometheus (scripts/install-deps.sh)"
            )
        self.ports["prometheus"] = free_port()
        home = self.work_dir / "prometheus"
        home.mkdir(exist_ok=True)
        targets = [
            prometheus_config.ScrapeTarget(
                "zt-ra", f"127.0.0.1:{self.ports['ra']}", str(self.bundle()), tls_server_name="127.0.0.1"
            ),
            prometheus_config.ScrapeTarget("zt-crl", f"127.0.0.1:{self.ports['crl']}"),
        ]
        if self.topology.agent_metrics:
            targets += [
                prometheus_config.ScrapeTarget(f"agent-{s.name}", f"127.0.0.1:{self.ports[f'{s.name}:agent-metrics']}")
                for s in self.topology.services
            ]
        targets += [
            prometheus_config.ScrapeTarget(s.name, f"127.0.0.1:{self.ports[f'{s.name}:metrics']}")
            for s in self.topology.services
        ]
        config = home / "prometheus.yml"
        config.write_text(prometheus_config.render(targets, self.topology.prometheus_interval))
        argv = [
            binary,
            *prometheus_config.server_args(str(config), str(home / "data"), f"127.0.0.1:{self.ports['prometheus']}"),
        ]
        p = self._start("prometheus", argv)
        server = Prometheus(self.prometheus_url())
        process.wait_until("prometheus /-/ready", server.ready, timeout=30, proc=p)
        server.wait_all_up(set(prometheus_config.jobs(self.topology)))

    # -- the mesh policy -------------------------------------------------------------------------

    def policy_file(self) -> Path:
        """The lab's copy of deploy/mesh-policy.json, which both services run with."""
        return self.work_dir / "policy" / POLICY_FILE

    def set_policy(self, text: str) -> None:
        """Replace the policy file as an operator would: a new file renamed over the old one
        (the services notice the new mtime and reload it; no restart)."""
        path = self.policy_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{POLICY_FILE}.new")
        tmp.write_text(text)
        tmp.chmod(0o644)
        tmp.replace(path)

    # -- the RA from two sources, an agent on a given bundle (Milestone 5) ----------------------

    def ra_issue(self, token: str, spiffe_id: str, *, source: int) -> ra_sources.RaAnswer:
        addr = RA_SOURCES[source]
        return ra_sources.issue(self.ra_url(), self.bundle(), token, spiffe_id, source=addr, local_address=addr)

    def agent_once(self, name: str, token_file: Path, bundle_pem: bytes, pin: str) -> tuple[int, str]:
        """The real agent, once (bootstrap, no CRL), on `bundle_pem` pinned to `pin`."""
        d = self.work_dir / "agent-once" / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "bundle.pem").write_bytes(bundle_pem)
        argv = python_cmd(
            "zt.agent.main",
            *("--ra", self.ra_url(), "--bundle", str(d / "bundle.pem"), "--bundle-sha256", pin),
            *("--token-file", str(token_file), "--service", name, "--out", str(d / "out"), "--once", "--no-crl"),
        )
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        return r.returncode, r.stderr

    # -- faults: components stopped and started again ---------------------------------------

    def stop_component(self, name: str) -> None:
        """Stop a component (only "crl", the publisher, so far) by its PID; its port stays ours."""
        proc = self._component(name)
        progress(f"stopping {proc.name} (pid {proc.pid}) as a fault")
        proc.stop()
        self.procs.remove(proc)

    def start_component(self, name: str) -> None:
        """Start a stopped component again on the same port, and wait until it answers."""
        if name != "crl":
            raise host_identities.LabError(f"start_component: only 'crl' can be restarted, not {name!r}")
        if "crl" not in self.ports:
            raise host_identities.LabError("start_component: the lab is not up, it has no crl to start again")
        if any(p.name == "zt-crl" and p.alive() for p in self.procs):
            raise host_identities.LabError("start_component: zt-crl is running already")
        self._start_crl()

    def kill_component(self, name: str) -> dict[str, Any]:
        """SIGKILL a component ("ra" or "agent-<service>") by its PID, as a crash would (chaos
        plan 6): its pid and exit code. Its port, store and certificate directory stay. An agent
        is killed mid-write: the lab watches its certificate directory (for up to
        MID_WRITE_WAIT_S, longer than a renewal period in the chaos lab) and kills it the moment a
        new generation directory exists without its last file, svid.json; what that generation
        held at the kill is part of the answer."""
        proc = self._killable(name)
        out = self.cert_dir(name.removeprefix("agent-")) if name.startswith("agent-") else None
        writing = None if out is None else gen_watch.wait_for_write(out, MID_WRITE_WAIT_S, proc.alive)
        progress(f"kill -9 {proc.name} (pid {proc.pid}) as a fault" + (f", writing {writing}" if writing else ""))
        killed_at = time.time()
        proc.kill()
        self.procs.remove(proc)
        answer: dict[str, Any] = {"killed_at": killed_at, "killed_pid": proc.pid, "exit_code": proc.popen.returncode}
        if out is not None:
            answer["writing"] = writing
            answer["files_at_kill"] = sorted(p.name for p in (out / writing).iterdir()) if writing else None
        return answer

    def restart_component(self, name: str) -> int:
        """Start a killed component again as it was started (same port, store, certificate
        directory and token file) and wait until it answers: its new PID."""
        self._check_killable(name)
        if any(p.name == self._proc_name(name) and p.alive() for p in self.procs):
            raise host_identities.LabError(f"restart_component: {name} is running already")
        if name == "ra":
            self._start_ra()
        else:
            s = next(s for s in self.topology.services if f"agent-{s.name}" == name)
            self._start_agent(s, self.run_dir / f"{s.name}.token")
        return next(p.pid for p in reversed(self.procs) if p.name == self._proc_name(name))

    def _proc_name(self, name: str) -> str:
        return "zt-ra" if name == "ra" else name

    def _check_killable(self, name: str) -> None:
        if name != "ra" and name not in {f"agent-{s.name}" for s in self.topology.services}:
            raise host_identities.LabError(f"kill_component: only ra or agent-<service>, not {name!r}")

    def _killable(self, name: str) -> process.Proc:
        self._check_killable(name)
        for p in self.procs:
            if p.name == self._proc_name(name) and p.alive():
                return p
        raise host_identities.LabError(f"kill_component: {name} is not running")

    def _component(self, name: str) -> process.Proc:
        if name != "crl":
            raise host_identities.LabError(f"stop_component: only 'crl' can be stopped, not {name!r}")
        for p in self.procs:
            if p.name == "zt-crl" and p.alive():
                return p
        raise host_identities.LabError("stop_component: zt-crl is not running")

    # -- what scenarios use ----------------------------------------------------------------------

    def service_url(self, service: str, *, from_service: bool = False) -> str:
        """In a chaos lab, through the edge's proxy: load->service, or (from_service) the other
        service's /call to it."""
        proxy = f"mesh-{service}" if from_service else f"load-{service}"
        return f"https://127.0.0.1:{self._via(proxy, self.ports[f'{service}:tls'])}"

    def metrics_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[f'{service}:metrics']}"

    def agent_metrics_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[f'{service}:agent-metrics']}"

    def rotate(self, service: str) -> None:
        """A manual rotation, as an operator asks for one: `zt-agent rotate --pid-file F`
        (SIGUSR1 to the agent that wrote F)."""
        argv = python_cmd("zt.agent.main", "rotate", "--pid-file", str(self.agent_pid_file(service)))
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise host_identities.LabError(f"zt-agent rotate for {service} failed ({r.returncode}): {last}")

    def component_log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def ra_url(self) -> str:
        return f"https://127.0.0.1:{self.ports['ra']}"

    def crl_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['crl']}"

    def prometheus_url(self) -> str:
        if "prometheus" not in self.ports:
            raise host_identities.LabError("this lab runs no Prometheus (Topology.prometheus)")
        return f"http://127.0.0.1:{self.ports['prometheus']}"

    def agent_identity(self, service: str) -> LabIdentity:
        return LabIdentity(service, self.topology.spiffe_id(service), self.cert_dir(service))

    def reregister(self, service: str) -> dict[str, Any]:
        """The token file the agent was started with gets the new token (ztca replaces it
        atomically, 0600); the agent notices the change and bootstraps again."""
        token = self.run_dir / f"{service}.token"
        doc = self.ztca("register", service, "--reenable", "--token-file", str(token))
        return {"service": doc.get("service"), "spiffe_id": doc.get("spiffe_id"), "token_file": str(token)}

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.alive():
                progress(f"stopping {p.name} (pid {p.pid})")
            p.stop()
        self.procs.clear()
        if self._toxiproxy is not None:
            self._toxiproxy.close()
            self._toxiproxy = None
        if self._pg is not None:
            progress(f"stopping PostgreSQL (pid {self._pg.proc.pid})")
            self._pg.stop()
            self._pg = None


class ProcessRuntime:
    name = "process"

    def create(self, topology: Topology, work_dir: Path) -> ProcessLab:
        """A lab not yet started: call up(); stop() and collect_logs() work whatever happened."""
        return ProcessLab(topology, work_dir)

    def start(self, topology: Topology, work_dir: Path) -> ProcessLab:
        return bring_up(self.create(topology, work_dir))
