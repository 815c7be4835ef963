"""Reading the rotation counters and certificate ages of a running lab, from outside.

- `settle`: wait (bounded) until every service presents the serial its agent wrote last, so
  a scrape is not taken between an agent's write and the service's reload;
- `scrape_counters`: the agents' `rotation_success_total` and the services'
  `mtls_rotation_total{result="success"}`, each with the time it was read;
- `AgeSampler`: a background thread that scrapes each agent's `cert_age_seconds` and
  `cert_expiry_seconds` about once a second while the load runs.

A scrape that fails is kept as an error, never raised: the checker turns missing evidence
into UNKNOWN, which fails the run.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx

from zt.lab import metrics_scrape
from zt.lab.rotations import agent_generations
from zt.lab.runtime import RunningLab

AGENT_COUNTER = "rotation_success_total"
SERVICE_COUNTER = "mtls_rotation_total"


def agent_latest_serial(lab: RunningLab, service: str) -> str | None:
    gens = agent_generations(service, lab.component_log(f"agent-{service}"))
    return gens[-1].new_serial if gens else None


def service_serial(lab: RunningLab, service: str) -> str | None:
    try:
        doc = httpx.get(lab.metrics_url(service) + "/healthz", timeout=3).json()
    except (httpx.HTTPError, ValueError):
        return None
    return str(doc.get("serial")) if isinstance(doc, dict) and doc.get("serial") else None


def settle(lab: RunningLab, services: list[str], timeout: float = 15.0) -> dict[str, bool]:
    """Per service: whether it presents its agent's newest serial (waited for up to `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        state = {s: service_serial(lab, s) == agent_latest_serial(lab, s) for s in services}
        if all(state.values()) or time.monotonic() >= deadline:
            return state
        time.sleep(0.2)


@dataclass(frozen=True)
class CounterScrape:
    at: float
    agent: dict[str, float | None]
    service: dict[str, float | None]
    errors: dict[str, str]


def _read(url: str, name: str, **labels: str) -> float | None:
    samples = metrics_scrape.scrape(url)
    key = (name, frozenset(labels.items()))
    return samples.get(key)


def scrape_counters(lab: RunningLab, services: list[str]) -> CounterScrape:
    at = time.time()
    agent: dict[str, float | None] = {}
    service: dict[str, float | None] = {}
    errors: dict[str, str] = {}
    for s in services:
        try:
            agent[s] = _read(lab.agent_metrics_url(s), AGENT_COUNTER)
        except Exception as e:  # noqa: BLE001 - missing evidence, judged UNKNOWN
            agent[s], errors[f"agent-{s}"] = None, f"{type(e).__name__}: {e}"
        try:
            service[s] = _read(lab.metrics_url(s), SERVICE_COUNTER, result="success")
        except Exception as e:  # noqa: BLE001 - as above
            service[s], errors[s] = None, f"{type(e).__name__}: {e}"
    return CounterScrape(at, agent, service, errors)


@dataclass
class AgeSampler:
    """Samples (time, cert_age_seconds, cert_expiry_seconds) per agent, about once a second."""

    lab: RunningLab
    services: list[str]
    period: float = 1.0
    samples: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.samples = {s: [] for s in self.services}
        self._thread = threading.Thread(target=self._run, name="agent-age-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            for s in self.services:
                try:
                    samples = metrics_scrape.scrape(self.lab.agent_metrics_url(s), timeout=2)
                    age = samples.get(("cert_age_seconds", frozenset()))
                    expiry = samples.get(("cert_expiry_seconds", frozenset()))
                    if age is not None and expiry is not None:
                        self.samples[s].append((time.time(), age, expiry))
                    else:
                        self.errors[s] = "cert_age_seconds or cert_expiry_seconds missing"
                except Exception as e:  # noqa: BLE001 - a missed sample is just one fewer
                    self.errors[s] = f"{type(e).__name__}: {e}"
            self._stop.wait(self.period)
