"""Benchmark: certificates per second and latency percentiles for POST /v1/issue.

Starts real zt-ra processes on a fresh CA (1 worker and N workers, each store durability),
pre-registers one bootstrap token per request and pre-builds the CSRs (so the client measures
the RA, not its own key generation), then drives /v1/issue over HTTPS keep-alive connections
from several client threads. Prints a table and the ratio of N workers to 1.

    python -m bench.ra_issue [--requests 1500] [--clients 8] [--workers 2] [--json out.json]
    python -m bench.ra_issue --limits-cost [--rounds 4] [--requests 600] [--workers 2]

The first form runs with the rate limits and the lockout off (they would refuse a benchmark).
`--limits-cost` measures what the limits cost at full issuance rate (docs/rate-limits.md):
in one run, alternating rounds with the limits off and on with limits so high they are checked
on every request but never hit, each round on a fresh CA.

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
from typing import Any

from tests.conftest import CaDir, make_ca, start_ra
from zt.agent.material import build_csr, csr_pem
from zt.ca.authority import Authority
from zt.ca.layout import CaPaths
from zt.clock import SystemClock
from zt.pki.keys import generate_key
from zt.ra.limits import Limits, LockoutPolicy, Rate
from zt.ra.ratelimit import RateLimiter, SourceTicket
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


# The limits off, and on but never reached. The per-source window is 2 s so that it holds about
# as many hits at this rate (some hundreds) as the default 600/1m holds at most: the count the
# check makes is that of the default's worst case. Every request is one new identity, as in an
# issuance storm; the per-identity check runs on each (one indexed count, one insert).
LIMITS_OFF = ("--rate-issue", "0", "--rate-source", "0", "--lockout-threshold", "0")
LIMITS_ON_HIGH = ("--rate-issue", "1000000/1m", "--rate-source", "1000000/2s", "--lockout-threshold", "5")


def run_case(
    workers: int, durability: str, requests: int, clients: int, limits: tuple[str, ...] = LIMITS_OFF
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        ca = make_ca(tmp_path)
        print(f"  preparing {requests} tokens and CSRs ...", flush=True)
        jobs = prepare(ca, requests)
        ra = start_ra(ca, tmp_path / "logs", "--workers", str(workers), "--durability", durability, *limits)
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
        "latencies_ms": ms,
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


def limits_cost(rounds: int, requests: int, clients: int, workers: int) -> tuple[dict[str, dict[str, Any]], bool]:
    """Alternating rounds (off, on, on, off, ...) so drift on a shared machine hits both alike."""
    per_mode: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for i in range(rounds):
        order = ("off", "on") if i % 2 == 0 else ("on", "off")
        for mode in order:
            print(f"round {i + 1}/{rounds}: limits {mode}", flush=True)
            r = run_case(workers, "full", requests, clients, LIMITS_OFF if mode == "off" else LIMITS_ON_HIGH)
            per_mode[mode].append(r)
            print("  " + json.dumps({k: v for k, v in r.items() if k != "latencies_ms"}), flush=True)
    summary: dict[str, dict[str, Any]] = {}
    for mode, runs in per_mode.items():
        pooled = [x for r in runs for x in r["latencies_ms"]]
        summary[mode] = {
            "rounds": len(runs),
            "certs_per_s_median": round(statistics.median(float(r["certs_per_s"]) for r in runs), 1),
            "certs_per_s_each": [r["certs_per_s"] for r in runs],
            "p50_ms": round(percentile(pooled, 50), 2),
            "p99_ms": round(percentile(pooled, 99), 2),
            "errors": sum(int(r["errors"]) for r in runs),
        }
    off, on = summary["off"], summary["on"]
    print(f"\nlimits cost, {workers} workers, durability full, {requests} requests x {rounds} rounds per mode")
    for mode in ("off", "on"):
        print(f"  limits {mode:>3}: {json.dumps(summary[mode])}")
    print(
        f"  on/off: throughput {on['certs_per_s_median'] / off['certs_per_s_median']:.3f}x, "
        f"p50 {on['p50_ms'] - off['p50_ms']:+.2f} ms, p99 {on['p99_ms'] - off['p99_ms']:+.2f} ms"
    )
    return summary, off["errors"] == 0 and on["errors"] == 0


def service_layer_limits_cost(batches: int, per_batch: int) -> dict[str, Any]:
    """The limits' own cost per issuance, without HTTP and TLS and their noise: in-process
    `RegistrationAuthority.issue` on one store, alternating batches with the limits off and on
    (what the HTTP path adds when on: the source check's read, then the source's and the
    identity's counts in the recording transaction). Durability full, as the RA's default."""
    with tempfile.TemporaryDirectory() as tmp:
        ca = make_ca(Path(tmp))
        jobs = prepare(ca, batches * 2 * per_batch)
        paths = CaPaths(ca.dir)
        authority = Authority.load(paths, "zt.lab")
        high = Limits(Rate(1_000_000, 60.0), Rate(1_000_000, 2.0), LockoutPolicy(5, 1.0, 900.0))
        modes = {
            "off": RegistrationAuthority(Store(paths.store), authority, paths, SystemClock(), limits=Limits.off()),
            "on": RegistrationAuthority(Store(paths.store), authority, paths, SystemClock(), limits=high),
        }
        front = RateLimiter(Store(paths.store, durable=False), high, SystemClock())
        per_issue: dict[str, list[float]] = {"off": [], "on": []}
        it = iter(jobs)
        for i in range(batches):
            for mode in ("off", "on") if i % 2 == 0 else ("on", "off"):
                ra = modes[mode]
                for _ in range(per_batch):
                    token, csr = next(it)
                    t0 = time.perf_counter()
                    if mode == "on":
                        front.check_source("127.0.0.1", "/v1/issue")
                        ra.issue(token, csr, source="127.0.0.1", ticket=SourceTicket("127.0.0.1", "/v1/issue"))
                    else:
                        ra.issue(token, csr)
                    per_issue[mode].append((time.perf_counter() - t0) * 1000)
    out: dict[str, Any] = {}
    for mode, ms in per_issue.items():
        out[mode] = {
            "issues": len(ms),
            "mean_ms": round(statistics.fmean(ms), 3),
            "p50_ms": round(percentile(ms, 50), 3),
            "p99_ms": round(percentile(ms, 99), 3),
        }
    out["added_ms_mean"] = round(out["on"]["mean_ms"] - out["off"]["mean_ms"], 3)
    out["added_ms_p50"] = round(out["on"]["p50_ms"] - out["off"]["p50_ms"], 3)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=1500)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", type=Path)
    p.add_argument("--limits-cost", action="store_true", help="measure the rate limits' cost instead")
    p.add_argument("--rounds", type=int, default=4, help="--limits-cost: rounds per mode")
    args = p.parse_args(argv)
    if args.limits_cost:
        inproc = service_layer_limits_cost(args.rounds * 2, 100)
        print(f"service layer in-process, per issuance: {json.dumps(inproc)}", flush=True)
        summary, ok = limits_cost(args.rounds, args.requests, args.clients, args.workers)
        summary["service_layer"] = inproc
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2))
        return 0 if ok else 1
    ceiling = service_layer_rate(min(args.requests, 500))
    print(f"service layer in-process (CSR check + sign + store, no HTTP): {ceiling:.0f} certs/s", flush=True)
    results = []
    for workers in (1, args.workers):
        for durability in ("full", "normal"):
            print(f"case: workers={workers} durability={durability}", flush=True)
            results.append(run_case(workers, durability, args.requests, args.clients))
            results[-1].pop("latencies_ms")
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
