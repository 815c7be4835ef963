"""A small typed client for Prometheus's HTTP API (v1), over httpx.

Milestone 4 asks the lab's Prometheus server what it scraped, not the components: the
server's own view is what a dashboard or an alert would see, so a metric that is exported
but never scraped, mislabelled or reset shows up here. Only what the lab needs:

- `query` (instant vector at a time), `query_range` (matrix over a window), `scalar_of`;
- `targets` (what the server scrapes, whether it is up, its last scrape and error), and
  `wait_all_up` / `wait_scraped_after`, so a reading is never taken before the scrape that
  saw the scenario's last action;
- `ready`.

Errors from the API (a bad PromQL expression, a server that does not answer) are raised as
`PrometheusError` with the server's own message: callers record them as evidence.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

import httpx

from zt.errors import ZtError


class PrometheusError(ZtError):
    """The Prometheus server refused a query or did not answer."""


@dataclass(frozen=True)
class Sample:
    """One series of an instant vector: its labels, the value, and the evaluation time."""

    labels: dict[str, str]
    value: float
    at: float


@dataclass(frozen=True)
class Series:
    """One series of a range query: its labels and (unix time, value) points."""

    labels: dict[str, str]
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Target:
    """An active scrape target as the server reports it."""

    job: str
    scrape_url: str
    health: str  # "up", "down", "unknown"
    last_scrape: float | None  # unix time of the last scrape, None before the first
    last_error: str

    @property
    def up(self) -> bool:
        return self.health == "up"


def _rfc3339(value: Any) -> float | None:
    try:
        t = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return None if t.year < 2000 else t.timestamp()  # Go's zero time before the first scrape


class Prometheus:
    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        try:
            r = httpx.get(self.url + path, params=params, timeout=self.timeout)
        except httpx.HTTPError as e:
            raise PrometheusError(f"{self.url}{path}: {type(e).__name__}: {e}") from e
        try:
            doc = r.json()
        except ValueError as e:
            raise PrometheusError(f"{self.url}{path}: HTTP {r.status_code}, not JSON: {r.text[:200]}") from e
        if not isinstance(doc, dict) or doc.get("status") != "success":
            err = doc.get("error") if isinstance(doc, dict) else doc
            raise PrometheusError(f"{path} {params or ''}: HTTP {r.status_code}: {err}")
        return doc.get("data")

    def ready(self) -> bool:
        try:
            return httpx.get(self.url + "/-/ready", timeout=self.timeout).status_code == 200
        except httpx.HTTPError:
            return False

    def query(self, promql: str, at: float | None = None) -> list[Sample]:
        """An instant query; each series' labels and value (NaN and Inf as floats)."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", params)
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            return [Sample({}, float(result[1]), float(result[0]))]
        if kind != "vector":
            raise PrometheusError(f"{promql!r}: expected a vector, got {kind}")
        return [Sample(dict(s["metric"]), float(s["value"][1]), float(s["value"][0])) for s in result]

    def scalar_of(self, promql: str, at: float | None = None) -> float | None:
        """The value of a query that yields at most one series; None when it yields none."""
        samples = self.query(promql, at)
        if len(samples) > 1:
            raise PrometheusError(f"{promql!r} yields {len(samples)} series, expected one")
        return samples[0].value if samples else None

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[Series]:
        data = self._get(
            "/api/v1/query_range",
            {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step}s"},
        )
        if data.get("resultType") != "matrix":
            raise PrometheusError(f"{promql!r}: expected a matrix, got {data.get('resultType')}")
        return [Series(dict(s["metric"]), tuple((float(t), float(v)) for t, v in s["values"])) for s in data["result"]]

    def targets(self) -> list[Target]:
        data = self._get("/api/v1/targets", {"state": "active"})
        return [
            Target(
                str(t.get("labels", {}).get("job", t.get("scrapePool", "?"))),
                str(t.get("scrapeUrl", "")),
                str(t.get("health", "unknown")),
                _rfc3339(t.get("lastScrape")),
                str(t.get("lastError", "")),
            )
            for t in data.get("activeTargets", [])
        ]

    def wait_all_up(self, jobs: set[str], timeout: float = 30.0) -> list[Target]:
        """Until every job in `jobs` has a target and all are up; PrometheusError naming the
        ones that are not (with the server's last scrape error) when `timeout` passes."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                ts = self.targets()
                why = [f"{t.job} ({t.scrape_url}): {t.health} {t.last_error}" for t in ts if not t.up]
                why += [f"{j}: not a target" for j in sorted(jobs - {t.job for t in ts})]
            except PrometheusError as e:
                ts, why = [], [str(e)]
            if not why:
                return ts
            if time.monotonic() >= deadline:
                raise PrometheusError(f"targets not up after {timeout:.0f}s: {'; '.join(why)}")
            time.sleep(0.25)

    def wait_scraped_after(self, t: float, timeout: float = 15.0) -> None:
        """Until every target was scraped (successfully) after unix time `t`: a query made then
        sees everything the components had counted by `t`."""
        deadline = time.monotonic() + timeout
        while True:
            late = [x for x in self.targets() if not x.up or x.last_scrape is None or x.last_scrape <= t]
            if not late:
                return
            if time.monotonic() >= deadline:
                raise PrometheusError(
                    "not scraped since the action: " + "; ".join(f"{x.job} {x.health} {x.last_error}" for x in late)
                )
            time.sleep(0.2)


def answers(prom: Prometheus, queries: list[str]) -> list[tuple[str, str, float]]:
    """Each query's series as a person reads them: (query, labels without name and instance,
    value): for the report's table and `./demo.sh observe`."""
    out = []
    for q in queries:
        for sample in prom.query(q):
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k not in ("__name__", "instance"))
            out.append((q, "{" + labels + "}", round(sample.value, 3)))
    return out


# The questions a person asks first, for the report and the demo.
FIRST_QUESTIONS = [
    "sum by (job, result) (mtls_handshakes_total)",
    "mtls_cert_expiry_seconds",
    "sum by (job) (rotation_success_total)",
    "sum by (via) (zt_ra_certificates_issued_total)",
    "up",
]
