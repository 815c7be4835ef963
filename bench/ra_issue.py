"""Benchmark: certificates per second and latency percentiles for POST /v1/issue.

Starts real zt-ra processes on a fresh CA (1 worker and N workers, each store durability),
pre-registers one bootstrap token per request and pre-builds the CSRs (so the client measures
the RA, not its own key generation), then drives /v1/issue over HTTPS keep-alive connections
from several client threads. Prints a table and the ratio of N workers to 1.

    python -m bench.ra_issue [--requests 1500] [--clients 8] [--workers 2] [--json out.json]

The load generator runs on the same machine and takes CPU from the RA: read the numbers as a
lower bound and as ratios between configurations.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.conftest import CaDir, make_ca, start_ra
from zt.agent.material import build_csr, csr_pem
from zt.ca.authority import Authority
from zt.ca.layout import CaPaths
from zt.clock import SystemClock
from zt.pki.keys import generate_key
from zt.ra.service import RegistrationAuthority
from zt.ra.store import Store


def prepare(ca: CaDir, n: int) -> list[tuple[str, str]]:
    paths = CaPaths(ca.dir)
    ra = RegistrationAuthority(Store(paths.store, durable=False), Authority.load(paths, "zt.lab"), paths, SystemClock())
    jobs = []
    for i in range(n):
        reg = ra.register(f"b{i}", dt.timedelta(hours=1))
        jobs.append((reg.token, csr_pem(build_csr(generate_key(), reg.identity.spiffe_id))))
    ra.store.close()
    return jobs


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def run_case(workers: int, durability: str, requests: int, clients: int) -> dict[str, float | int | str]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        ca = make_ca(tmp_path)
        print(f"  preparing {requests} tokens and CSRs ...", flush=True)
        jobs = prepare(ca, requests)
        ra = start_ra(ca, tmp_path / "logs", "--workers", str(workers), "--durability", durability)
        latencies: list[float] = []
        errors = [0]
        lock = threading.Lock()
        local = threading.local()
        try:

            def one(job: tuple[str, str]) -> None:
                client = getattr(local, "client", None)
                if client is None:
                    client = local.client = ra.client()
                t0 = time.perf_counter()
                r = client.post("/v1/issue", json={"csr": job[1]}, headers={"Authorization": f"Bearer {job[0]}"})
                dt_ = time.perf_counter() - t0
                with lock:
                    if r.status_code == 200:
                        latencies.append(dt_)
                    else:
                        errors[0] += 1

            warm = jobs[: min(50, len(jobs) // 10)]
            for j in warm:
                one(j)
            latencies.clear()
            rest = jobs[len(warm) :]
            start = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(one, rest))
            wall = time.perf_counter() - start
        finally:
            ra.proc.stop()
    ms = [x * 1000 for x in latencies]
    return {
        "workers": workers,
        "durability": durability,
        "requests": len(rest),
        "errors": errors[0],
        "certs_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def service_layer_rate(requests: int) -> float:
    """Issues per second of RegistrationAuthority.issue in-process (no HTTP, no TLS): the ceiling."""
    with tempfile.TemporaryDirectory() as tmp:
        ca = make_ca(Path(tmp))
        jobs = prepare(ca, requests)
        paths = CaPaths(ca.dir)
        ra = RegistrationAuthority(
            Store(paths.store, durable=False), Authority.load(paths, "zt.lab"), paths, SystemClock()
        )
        start = time.perf_counter()
        for token, csr in jobs:
            ra.issue(token, csr)
        return requests / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=1500)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    ceiling = service_layer_rate(min(args.requests, 500))
    print(f"service layer in-process (CSR check + sign + store, no HTTP): {ceiling:.0f} certs/s", flush=True)
    results = []
    for workers in (1, args.workers):
        for durability in ("full", "normal"):
            print(f"case: workers={workers} durability={durability}", flush=True)
            results.append(run_case(workers, durability, args.requests, args.clients))
            print("  " + json.dumps(results[-1]), flush=True)
    print()
    cols = ["workers", "durability", "requests", "errors", "certs_per_s", "p50_ms", "p95_ms", "p99_ms"]
    print("  ".join(f"{c:>12}" for c in cols))
    for r in results:
        print("  ".join(f"{r[c]!s:>12}" for c in cols))
    by = {(r["workers"], r["durability"]): r for r in results}
    for d in ("full", "normal"):
        one, many = by[(1, d)], by[(args.workers, d)]
        print(
            f"ratio {args.workers} workers / 1 worker ({d}): "
            f"{float(many['certs_per_s']) / float(one['certs_per_s']):.2f}x"
        )
    print(f"service layer in-process: {ceiling:.0f} certs/s")
    if args.json:
        args.json.write_text(json.dumps({"service_layer_certs_per_s": round(ceiling, 1), "http": results}, indent=2))
    return 0 if all(r["errors"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
