"""The lab's Prometheus server: what it scrapes, as a configuration file, for either runtime.

One scrape job per component, named as the component is (`zt-ra`, `zt-crl`,
`agent-service-a`, `service-a`, ...), so a PromQL answer reads `{job="service-a"}` whatever
runs it. The RA serves its metrics on its TLS listener: Prometheus verifies it against the
trust bundle and the name the RA's certificate carries, as any other client must. The other
components serve plain HTTP on their metrics listener. The interval is short (the lab's
default is 1 s) so a scenario of a minute has enough samples to plot and to query.

The file is JSON, which is YAML, so no YAML library is needed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from zt.lab.topology import Topology


@dataclass(frozen=True)
class ScrapeTarget:
    job: str  # the component's name
    address: str  # host:port as the Prometheus server reaches it
    tls_ca_file: str | None = None  # scheme https, verified against this bundle
    tls_server_name: str | None = None


def jobs(topology: Topology) -> list[str]:
    """The components the lab's Prometheus scrapes: RA, publisher, agents (when they serve
    metrics: Topology.agent_metrics) and services."""
    out = ["zt-ra", "zt-crl"]
    if topology.agent_metrics:
        out += [f"agent-{s.name}" for s in topology.services]
    return out + [s.name for s in topology.services]


def _duration(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def render(targets: list[ScrapeTarget], interval: float) -> str:
    """prometheus.yml for `targets`, scraped every `interval` seconds (and as long a timeout: a
    slow scrape on a busy machine is late, not missing)."""
    scrape_configs = []
    for t in targets:
        job: dict[str, object] = {"job_name": t.job, "static_configs": [{"targets": [t.address]}]}
        if t.tls_ca_file is not None:
            job["scheme"] = "https"
            tls: dict[str, str] = {"ca_file": t.tls_ca_file}
            if t.tls_server_name:
                tls["server_name"] = t.tls_server_name
            job["tls_config"] = tls
        scrape_configs.append(job)
    doc = {
        "global": {
            "scrape_interval": _duration(interval),
            "scrape_timeout": _duration(interval),
            "evaluation_interval": _duration(interval),
        },
        "scrape_configs": scrape_configs,
    }
    return json.dumps(doc, indent=2) + "\n"


def server_args(config_file: str, data_dir: str, listen: str) -> list[str]:
    """The server's flags: our config, our data directory and address, nothing of the
    Debian service's (/etc/prometheus, /var/lib/prometheus) so it can run beside it."""
    return [
        f"--config.file={config_file}",
        f"--storage.tsdb.path={data_dir}",
        f"--web.listen-address={listen}",
        "--storage.tsdb.retention.time=1d",
        "--log.format=json",
    ]
