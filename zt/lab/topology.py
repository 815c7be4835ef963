"""What the lab runs: components, identities, ports and directories, independent of how.

A topology is data. A runtime (processes on 127.0.0.1, or containers) reads it and starts
it; scenarios ask the running lab for URLs and identities by name, never by mechanism.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zt.spiffe import workload_id

# The one policy file for the whole mesh (docs/contracts.md section 4, version 2): every lab
# runs both services with a copy of it, so every milestone runs under policy.
MESH_POLICY = Path(__file__).resolve().parents[2] / "deploy" / "mesh-policy.json"
POLICY_FILE = "mesh-policy.json"  # the copy's name in the lab (its policy directory)


@dataclass(frozen=True)
class ServiceSpec:
    """A workload: a native service and the agent that keeps its identity."""

    name: str  # also its service name in the CA: spiffe://<td>/svc/<name>
    language: str  # "cpp" (service-a) or "java" (service-b)
    binary: str  # build/service-a or build/service-b
    expect_peer: str  # the service it calls in /call by default
    reload: str  # "signal" (SIGHUP via pid file) or "watch" (directory watch + touched file)
    crl_stale: str | None = None  # --crl-stale refuse|warn for this service; None: the topology's


DEFAULT_SERVICES = (
    ServiceSpec("service-a", "cpp", "build/service-a", expect_peer="service-b", reload="signal"),
    ServiceSpec("service-b", "java", "build/service-b", expect_peer="service-a", reload="watch"),
)


@dataclass(frozen=True)
class Topology:
    trust_domain: str = "zt.lab"
    leaf_ttl_seconds: int = 3600
    agent_ttl_seconds: int | None = None  # what agents ask for; None: the RA's default
    crl_validity: str = "1h"
    crl_interval: float = 1.0  # agents' CRL poll period
    crl_stale: str = "refuse"
    ra_workers: int = 1
    services: tuple[ServiceSpec, ...] = DEFAULT_SERVICES
    agent_renew_at: float | None = None  # agents' --renew-at (fraction of the lifetime); None: theirs
    # Agents serve their metrics (--metrics-listen) and write their PID (--agent-pid-file), so the
    # lab can scrape rotation counters and ask for a manual rotation (RunningLab.rotate).
    agent_metrics: bool = False
    # Services started with --no-reload: they never pick up a new generation. Milestone 2 must
    # FAIL with one of these (tests/e2e/test_m2_broken_reload.py).
    no_reload: tuple[str, ...] = ()
    # A real Prometheus server that scrapes every component with a metrics endpoint every
    # `prometheus_interval` seconds (RunningLab.prometheus_url; zt.lab.prometheus_config).
    # Milestone 4's lab only: the others stay fast.
    prometheus: bool = False
    prometheus_interval: float = 1.0
    # The RA's rate limits and lockout (zt-ra --rate-issue, --rate-source, --lockout-*). The
    # lab's agents renew every few seconds from one address in Milestones 2 and 3 (and M3 renews
    # one client twenty times), so the lab's default is generous: the limiter runs in every
    # lab without biting; Milestone 5's lab sets the RA's own defaults and makes them bite.
    ra_rate_issue: str = "1000/1m"
    ra_rate_source: str = "10000/1m"
    ra_lockout_threshold: int = 5
    ra_lockout_base: str = "1s"
    ra_lockout_max: str = "15m"
    # Every edge through a real toxiproxy server (zt.lab.edges, docs/chaos.md): the chaos lab only.
    chaos: bool = False
    # The RA's store (docs/scaling.md): "sqlite" (the CA directory's file, one RA) or "postgres"
    # (a throwaway PostgreSQL server, zt.lab.postgres, and RA_REPLICAS replicas on it; agents are
    # given every replica's URL). `zt-lab run --store postgres` sets it for every scenario.
    store: str = "sqlite"

    @property
    def ra_replicas(self) -> int:
        return 2 if self.store == "postgres" else 1

    # Agents started with --no-renewal-retry: a failed renewal is not retried before the
    # certificate expires. The chaos plan "ra-down" must FAIL with one of these
    # (tests/e2e/test_chaos_weak_agent.py).
    weak_agents: tuple[str, ...] = ()

    def ra_args(self) -> list[str]:
        """zt-ra's flags beyond where it listens and its CA: leaf lifetime, workers, a CRL check
        every second, the limits (the same on both runtimes)."""
        return [
            *("--leaf-ttl", f"{self.leaf_ttl_seconds}s", "--workers", str(self.ra_workers)),
            *("--crl-check-interval", "1", *self.ra_limit_args()),
        ]

    def ra_limit_args(self) -> list[str]:
        """zt-ra's rate-limit and lockout flags for this lab (the same on both runtimes)."""
        return [
            "--rate-issue",
            self.ra_rate_issue,
            "--rate-source",
            self.ra_rate_source,
            "--lockout-threshold",
            str(self.ra_lockout_threshold),
            "--lockout-base",
            self.ra_lockout_base,
            "--lockout-max",
            self.ra_lockout_max,
        ]

    def service(self, name: str) -> ServiceSpec:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(f"no service {name!r} in the topology")

    def crl_stale_mode(self, service: str) -> str:
        """The service's --crl-stale: its own when its spec sets one, else the topology's."""
        return self.service(service).crl_stale or self.crl_stale

    def spiffe_id(self, service: str) -> str:
        """spiffe://<td>/svc/<service>, built and validated by zt.spiffe."""
        return str(workload_id(self.trust_domain, service))
