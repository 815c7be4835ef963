"""Reading the services' Prometheus metrics, for server-side evidence of what they refused."""

from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str, timeout: float = 5.0) -> Samples:
    text = httpx.get(url.rstrip("/") + "/metrics", timeout=timeout).text
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = float(s.value)
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def counter(metrics_url: str, name: str, **labels: str) -> float:
    return value(scrape(metrics_url), name, **labels)


def counter_delta(metrics_url: str, name: str, before: float, *, wait: float = 3.0, **labels: str) -> float:
    """How much a counter grew since `before`, waiting up to `wait` s for it to grow at all
    (a server counts after it sent its alert or closed the connection)."""
    deadline = time.monotonic() + wait
    while True:
        delta = counter(metrics_url, name, **labels) - before
        if delta >= 1 or time.monotonic() >= deadline:
            return delta
        time.sleep(0.1)
