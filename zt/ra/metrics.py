"""The RA's Prometheus metrics, correct across several worker processes.

With more than one worker each process counts on its own; prometheus-client's multiprocess
mode (PROMETHEUS_MULTIPROC_DIR, set by zt-ra before workers start) sums them at scrape time.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

REQUESTS = Counter("zt_ra_requests_total", "RA HTTP requests", ["endpoint", "code"])
LATENCY = Histogram(
    "zt_ra_request_duration_seconds",
    "RA request latency",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
ISSUED = Counter("zt_ra_certificates_issued_total", "certificates issued", ["via"])
REJECTED = Counter("zt_ra_rejections_total", "requests refused, by reason code", ["endpoint", "reason"])
REVOKED = Counter("zt_ra_revocations_total", "certificates revoked")
CRLS = Counter("zt_ra_crls_published_total", "CRLs published by this RA")
# Rate limits and lockouts (zt.ra.ratelimit, zt.ra.lockout). Names as fixed by the helpers'
# contract (section R), without the zt_ prefix of the counters above.
RATE_LIMITED = Counter("ra_rate_limited_total", "requests refused by a rate limit", ["limit"])
LOCKOUTS = Counter("ra_lockouts_total", "lockouts started after failed token attempts", ["credential"])
TOKEN_FAILURES = Counter("ra_token_failures_total", "wrong bootstrap or admin tokens presented", ["credential"])


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
