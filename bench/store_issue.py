"""Benchmark: the cost of a certificate on each store, SQLite next to PostgreSQL (issue 16).

In one run, on fresh CAs: real zt-ra processes (one worker each) over HTTPS on
- `sqlite`: the embedded store, one RA;
- `pg-1`: one RA on a real PostgreSQL server (zt.lab.postgres, fsync on);
- `pg-2`: two RA replicas on that server, the client alternating between them.
Tokens and CSRs are made before (the client measures the RA, not its key generation); the rate
limits and lockout are off. Reported per configuration: certificates per second, latency
percentiles, and CPU per certificate of the RA processes and of the PostgreSQL server (every
process of the server: backends, WAL writer, checkpointer), read from /proc before and after.

On a 2-core machine shared with the load generator, the point is the cost per certificate,
not the scale-out: read the ratios, not the absolute rates (docs/scaling.md).

    python -m bench.store_issue [--requests 400] [--clients 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.conftest import CaDir, RaServer, make_ca, start_ra
from zt.agent.material import build_csr, csr_pem
from zt.ca.authority import Authority
from zt.clock import SystemClock
from zt.lab import postgres
from zt.pki.keys import generate_key
from zt.ra.service import RegistrationAuthority
from zt.ra.store_open import open_store

NO_LIMITS = ("--rate-issue", "0", "--rate-source", "0", "--lockout-threshold", "0")
_TICK = os.sysconf("SC_CLK_TCK")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system) of `root` and its live descendants."""
    tree, total, todo = _children(), 0.0, [root]
    while todo:
        pid = todo.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICK
        todo.extend(tree.get(pid, []))
    return total


def prepare(ca: CaDir, store_url: str | None, n: int) -> list[tuple[str, str]]:
    store = open_store(store_url, ca.paths, durable=False)
    store.check()
    ra = RegistrationAuthority(store, Authority.load(ca.paths, "zt.lab"), ca.paths, SystemClock())
    jobs = []
    for i in range(n):
        reg = ra.register(f"b{i}", dt.timedelta(hours=1))
        jobs.append((reg.token, csr_pem(build_csr(generate_key(), reg.identity.spiffe_id))))
    store.close()
    return jobs


def drive(ras: list[RaServer], jobs: list[tuple[str, str]], clients: int) -> tuple[float, list[float]]:
    """Issue every job, client threads over keep-alive connections, alternating replicas."""
    latencies: list[float] = []

    def worker(k: int) -> None:
        mine = jobs[k::clients]
        conns = [ra.client() for ra in ras]
        try:
            for i, (token, csr) in enumerate(mine):
                t = time.perf_counter()
                r = conns[(k + i) % len(conns)].post(
                    "/v1/issue", json={"csr": csr}, headers={"Authorization": f"Bearer {token}"}
                )
                if r.status_code != 200:
                    raise RuntimeError(f"issue: HTTP {r.status_code} {r.text[:200]}")
                latencies.append(time.perf_counter() - t)
        finally:
            for c in conns:
                c.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    return time.perf_counter() - started, latencies


def run_config(
    name: str, replicas: int, server: postgres.PostgresServer | None, requests: int, clients: int, tmp: Path
) -> dict[str, Any]:
    url = server.create_database(name.replace("-", "_")) if server else None
    store_args = ("--store", url) if url else ()
    ca = make_ca(tmp / name, *store_args)
    jobs = prepare(ca, url, requests)
    ras = [
        start_ra(ca, tmp / name / "logs", *store_args, *NO_LIMITS, name=f"zt-ra-{name}-{i}") for i in range(replicas)
    ]
    try:
        warm = jobs[: max(clients, 8)]
        drive(ras, warm, clients)  # connections, pools and caches up before measuring
        measured = jobs[len(warm) :]
        ra_before = sum(tree_cpu(ra.proc.pid) for ra in ras)
        pg_before = tree_cpu(server.proc.pid) if server else 0.0
        wall, lat = drive(ras, measured, clients)
        ra_cpu = sum(tree_cpu(ra.proc.pid) for ra in ras) - ra_before
        pg_cpu = (tree_cpu(server.proc.pid) - pg_before) if server else 0.0
    finally:
        for ra in ras:
            ra.proc.stop()
    n = len(measured)
    return {
        "config": name,
        "replicas": replicas,
        "certificates": n,
        "per_second": round(n / wall, 1),
        "p50_ms": round(statistics.median(lat) * 1000, 1),
        "p99_ms": round(sorted(lat)[min(n - 1, round(0.99 * (n - 1)))] * 1000, 1),
        "ra_cpu_ms_per_cert": round(ra_cpu / n * 1000, 2),
        "pg_cpu_ms_per_cert": round(pg_cpu / n * 1000, 2),
        "total_cpu_ms_per_cert": round((ra_cpu + pg_cpu) / n * 1000, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.store_issue", description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=400, help="issuances per configuration (default: 400)")
    p.add_argument("--clients", type=int, default=4, help="client threads (default: 4)")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="zt-bench-store-") as d, postgres.running() as server:
        tmp = Path(d)
        rows.append(run_config("sqlite", 1, None, args.requests, args.clients, tmp))
        rows.append(run_config("pg-1", 1, server, args.requests, args.clients, tmp))
        rows.append(run_config("pg-2", 2, server, args.requests, args.clients, tmp))
    base = rows[0]["total_cpu_ms_per_cert"]
    heads = ("certs", "cert/s", "p50 ms", "p99 ms", "RA cpu", "PG cpu", "total", "x sqlite")
    print(f"{'config':<8} " + " ".join(f"{h:>8}" for h in heads))
    for r in rows:
        ratio = r["total_cpu_ms_per_cert"] / base if base else float("nan")
        r["cpu_ratio_to_sqlite"] = round(ratio, 2)
        print(
            f"{r['config']:<8} {r['certificates']:>8} {r['per_second']:>8} {r['p50_ms']:>8} {r['p99_ms']:>8}"
            f" {r['ra_cpu_ms_per_cert']:>8} {r['pg_cpu_ms_per_cert']:>8} {r['total_cpu_ms_per_cert']:>8} {ratio:>8.2f}"
        )
    print("CPU columns: milliseconds of CPU per certificate (user + system), RA processes and PostgreSQL server")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
