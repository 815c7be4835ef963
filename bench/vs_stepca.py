"""zt-ra against step-ca v0.30.2, side by side: certificates per second, p50 and p99 (issue 15).

    python -m bench.vs_stepca [--rounds 3] [--requests 1500] [--clients 8,32] [--workers 1]

One compiled load generator (bench/loadgen, Go, stdlib only) drives both servers the same way:
HTTPS keep-alive connections verified against each server's root, one fresh P-256 CSR per
request with one SPIFFE URI SAN, one-time tokens made before the clock starts (zt-ra: bootstrap
tokens registered in one transaction; step-ca: JWK provisioner JWTs, bench.stepca). Both servers
run at once on loopback, durable (zt-ra `--durability full`, step-ca's default badger database),
and the order of the servers rotates from round to round at each client count (`round_order`),
so the machine's noise (2 shared cores) and a server's place in a round hit all alike: read the
ratios, not the absolute numbers. zt-ra keeps every check it makes in production; only the
per-source limit is off (every request comes from 127.0.0.1, and step-ca has none); the
per-identity limit and the lockout stay on.

A sample of each server's answers is checked: the leaf's only SAN is the requested SPIFFE ID,
both servers give the same lifetime, and the chain verifies up to the server's root. Results go
to reports/bench/ra-vs-stepca.{json,md}; the exit code is non-zero if a request failed or a
check did not hold.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from bench import stepca
from tests.conftest import CaDir, make_ca
from zt.ca.layout import CaPaths
from zt.lab import process
from zt.lab.ports import free_port
from zt.ra import tokens
from zt.ra.store import Store
from zt.spiffe import workload_id

ROOT = Path(__file__).resolve().parent.parent
LEAF_TTL = dt.timedelta(hours=1)  # zt-ra's default --leaf-ttl; step-ca is given the same
ZT, BASE, STEP = "zt-ra", "zt-ra@base", "step-ca"


def build_loadgen(tools: Path) -> Path:
    out = tools / "bin" / "zt-loadgen"
    subprocess.run(["go", "build", "-o", str(out), "."], cwd=ROOT / "bench" / "loadgen", check=True)
    return out


def register_many(ca: CaDir, n: int, ttl: dt.timedelta) -> list[tuple[str, str]]:
    """n identities with one bootstrap token each, in one transaction (as `RegistrationAuthority.register`
    records each: identity, token hash, audit row), so preparing does not take n fsyncs."""
    store = Store(ca.paths.store, durable=False)
    trust_domain = store.meta("trust_domain") or ""
    now = time.time()
    jobs = []
    with store.write() as c:
        for i in range(n):
            name = f"b{i}"
            sid = str(workload_id(trust_domain, name))
            token = tokens.new_token(tokens.BOOTSTRAP_PREFIX)
            Store.ensure_identity(c, name, sid, now)
            Store.add_token(c, tokens.token_hash(token), name, now, now + ttl.total_seconds())
            Store.audit(c, now, "bench", "register", sid, "ok", "bench.vs_stepca")
            jobs.append((token, sid))
    store.close()
    return jobs


def run_loadgen(
    loadgen: Path, server: str, url: str, root: Path, jobs: list[tuple[str, str]], clients: int, work: Path
) -> dict[str, Any]:
    jobs_file = work / "jobs.jsonl"
    jobs_file.write_text("".join(json.dumps({"token": t, "san": s}) + "\n" for t, s in jobs))
    jobs_file.chmod(0o600)
    kind = "step" if server == STEP else "zt"
    argv = [str(loadgen), "-server", kind, "-url", url, "-root", str(root), "-jobs", str(jobs_file)]
    r = subprocess.run([*argv, "-clients", str(clients)], capture_output=True, text=True, timeout=600, check=False)
    jobs_file.unlink()
    if r.returncode != 0:
        raise RuntimeError(f"loadgen against {server} failed: {r.stderr.strip()}")
    result: dict[str, Any] = json.loads(r.stdout)
    return result


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of `pid` and every live descendant, from /proc (Linux): what a
    server spent, whatever else the shared machine was doing meanwhile."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, (0, 0.0))[1]
        todo += [child for child, (parent, _) in stats.items() if parent == p]
    return total


def check_samples(samples: list[dict[str, Any]], root: Path) -> tuple[list[str], set[float]]:
    """(problems, lifetimes in seconds) of a server's sampled answers."""
    roots = x509.load_pem_x509_certificates(root.read_bytes())
    problems: list[str] = []
    lifetimes: set[float] = set()
    for s in samples:
        chain = [x509.load_pem_x509_certificate(p.encode()) for p in s["chain"]]
        leaf = chain[0]
        try:
            sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            problems.append(f"{s['san']}: leaf has no SAN")
            continue
        uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
        if uris != [s["san"]] or len(list(sans)) != 1:
            problems.append(f"{s['san']}: leaf SANs are {[str(n.value) for n in sans]}")
        lifetimes.add((leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds())
        try:
            for child, parent in itertools.pairwise(chain):
                child.verify_directly_issued_by(parent)
            top = chain[-1]
            anchor = next((r for r in roots if r.subject == top.issuer), None)
            if anchor is None:
                raise ValueError(f"no root named {top.issuer.rfc4514_string()}")
            if top != anchor:
                top.verify_directly_issued_by(anchor)
        except (ValueError, TypeError, InvalidSignature) as e:
            problems.append(f"{s['san']}: chain does not verify: {e}")
    return problems, lifetimes


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rounds": len(runs),
        "certs_per_s": round(statistics.median(r["certs_per_s"] for r in runs), 1),
        "p50_ms": round(statistics.median(r["p50_ms"] for r in runs), 2),
        "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 2),
        "cpu_ms_per_cert": round(statistics.median(r["cpu_ms_per_cert"] for r in runs), 2),
        "certs_per_s_each": [round(r["certs_per_s"], 1) for r in runs],
        "errors": sum(r["errors"] for r in runs),
    }


def table(summary: dict[str, dict[str, dict[str, Any]]], clients: list[int]) -> str:
    """One row per zt-ra variant and client count, each against step-ca of the same run."""
    lines = [
        "| server | clients | certs/s | step-ca certs/s | ratio | p50 ms | step-ca p50 ms | p99 ms | step-ca p99 ms "
        "| p99 ratio | CPU ms/cert | step-ca CPU ms/cert |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for server in (s for s in summary if s != STEP):
        for c in clients:
            z, s = summary[server][str(c)], summary[STEP][str(c)]
            lines.append(
                f"| {server} | {c} | {z['certs_per_s']} | {s['certs_per_s']} "
                f"| {ratio(z['certs_per_s'], s['certs_per_s'])} | {z['p50_ms']} | {s['p50_ms']} | {z['p99_ms']} "
                f"| {s['p99_ms']} | {ratio(z['p99_ms'], s['p99_ms'])} | {z['cpu_ms_per_cert']} "
                f"| {s['cpu_ms_per_cert']} |"
            )
    return "\n".join(lines)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


@dataclass
class Target:
    url: str
    root: Path
    jobs: list[tuple[str, str]]
    proc: process.Proc


def start_zt(work: Path, name: str, n: int, workers: int, code: Path, extra: tuple[str, ...] = ()) -> Target:
    """A zt-ra on a fresh CA with `n` tokens, running the code checked out at `code`; `extra`
    flags come last and so override the defaults here (bench.limits_cost: the limits off or on)."""
    ca = make_ca(work / name)
    jobs = register_many(ca, n, LEAF_TTL)
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    ttl = f"{int(LEAF_TTL.total_seconds())}s"
    argv = [sys.executable, "-m", "zt.ra.main", "--ca-dir", str(ca.dir), "--listen", f"127.0.0.1:{port}"]
    argv += ["--workers", str(workers), "--rate-source", "0", "--leaf-ttl", ttl, "--durability", "full", *extra]
    tls = ssl.create_default_context(cafile=str(ca.paths.bundle))

    def ready() -> bool:
        return httpx.get(url + "/v1/status", verify=tls, timeout=5).status_code == 200

    env = {"PYTHONPATH": str(code)}
    proc = process.start(name, argv, work / "logs" / f"{name}.log", env=env, cwd=code)
    try:
        process.wait_until(f"{name} /v1/status", ready, timeout=60, proc=proc)
    except BaseException:
        proc.stop()
        raise
    return Target(url, CaPaths(ca.dir).bundle, jobs, proc)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per server and client count")
    p.add_argument("--requests", type=int, default=1500, help="requests per round")
    p.add_argument("--clients", default="8,32", help="client counts, comma-separated")
    p.add_argument("--workers", type=int, default=2, help="zt-ra worker processes (default: 2, one per core here)")
    p.add_argument(
        "--baseline", type=Path, help="also run the zt-ra of this checkout (e.g. the main branch) as zt-ra@base"
    )
    p.add_argument("--baseline-workers", type=int, help="zt-ra@base's worker processes (default: --workers)")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "bench")
    p.add_argument("--tools", type=Path, default=ROOT / ".tools")
    args = p.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",")]
    loadgen = build_loadgen(args.tools)
    step_binary = stepca.ensure_binary(args.tools)
    warm = 200
    total = warm + args.rounds * len(clients) * args.requests
    problems: list[str] = []
    targets: dict[str, Target] = {}
    with tempfile.TemporaryDirectory(prefix="zt-bench-") as tmp:
        work = Path(tmp)
        try:
            print(f"preparing {total} one-time tokens per server ...", flush=True)
            targets[ZT] = start_zt(work, ZT, total, args.workers, ROOT)
            if args.baseline:
                base_workers = args.baseline_workers or args.workers
                targets[BASE] = start_zt(work, BASE, total, base_workers, args.baseline.resolve())
            sc = stepca.configure(work / "step", free_port(), LEAF_TTL)
            step = sc.start(step_binary, work / "logs" / "step-ca.log")
            targets[STEP] = Target(sc.url, sc.root, [], step)
            # After the start: step-ca refuses a token issued before it started (its `iat`).
            time.sleep(1.0)
            now = time.time()
            targets[STEP].jobs = [(sc.token(san, now), san) for _, san in targets[ZT].jobs]
            runs = measure(loadgen, targets, clients, args.rounds, args.requests, warm, work)
        finally:
            for t in targets.values():
                t.proc.stop()
            # The servers' logs next to the results (step-ca says there why it refused a token).
            shutil.rmtree(args.out / "logs", ignore_errors=True)
            shutil.copytree(work / "logs", args.out / "logs", dirs_exist_ok=True)
        lifetimes: dict[str, set[float]] = {}
        for server, t in targets.items():
            samples = [s for by_c in runs[server].values() for r in by_c for s in r.get("samples") or []]
            found, lifetimes[server] = check_samples(samples, t.root)
            problems += [f"{server}: {x}" for x in found]
            if not samples:
                problems.append(f"{server}: no sample to check")
    if len(set(map(frozenset, lifetimes.values()))) != 1 or len(lifetimes[ZT]) != 1:
        problems.append(f"lifetimes differ: { ({k: sorted(v) for k, v in lifetimes.items()}) }")
    summary = {s: {c: summarise(rs) for c, rs in by_c.items()} for s, by_c in runs.items()}
    md = table(summary, clients)
    title = (
        f"zt-ra ({args.workers} worker(s), durability full) vs step-ca {stepca.STEP_CA_VERSION}, "
        f"medians of {args.rounds} alternating rounds of {args.requests} requests; ratio = zt-ra / step-ca"
    )
    verdict = "all held" if not problems else "; ".join(problems)
    loads = [r["load1"] for by_c in runs.values() for rs in by_c.values() for r in rs]
    load = f"load average (1 min) after each run: {min(loads):.1f} to {max(loads):.1f}"
    print(f"\n{title}\n{md}\nchecks (same SAN, same lifetime, chain verifies): {verdict}\n{load}")
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "zt_ra_workers": args.workers,
        "step_ca_version": stepca.STEP_CA_VERSION,
        "requests_per_round": args.requests,
        "cpus": os.cpu_count(),
        "load_average_1m": [min(loads), max(loads)],
        "summary": summary,
        "lifetimes_seconds": {k: sorted(v) for k, v in lifetimes.items()},
        "problems": problems,
        "runs": {
            s: {c: [{k: v for k, v in r.items() if k != "samples"} for r in rs] for c, rs in by_c.items()}
            for s, by_c in runs.items()
        },
    }
    (args.out / "ra-vs-stepca.json").write_text(json.dumps(doc, indent=2))
    (args.out / "ra-vs-stepca.md").write_text(
        f"# zt-ra vs step-ca\n\n{doc['when']}: {title}.\n\n{md}\n\nChecks: {verdict}\n\n{load.capitalize()}\n"
    )
    errors = sum(s["errors"] for by_c in summary.values() for s in by_c.values())
    return 0 if not problems and errors == 0 else 1


def round_order(names: list[str], rnd: int, k: int) -> list[str]:
    """The order of the servers in round `rnd` at the `k`-th client count: rotated by one per
    round and per client count, so over len(names) rounds each server runs in every position
    at every client count. (It was rotated by `rnd * len(clients) + k`: with two servers and two
    client counts, zt-ra then always ran first at 8 clients and step-ca always first at 32.)"""
    shift = (rnd + k) % len(names)
    return names[shift:] + names[:shift]


def measure(
    loadgen: Path,
    targets: dict[str, Target],
    clients: list[int],
    rounds: int,
    requests: int,
    warm: int,
    work: Path,
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Warm every server up, then rounds in which the order of the servers rotates."""
    names = list(targets)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {s: {str(c): [] for c in clients} for s in names}
    for server, t in targets.items():
        run_loadgen(loadgen, server, t.url, t.root, t.jobs[:warm], 8, work)
    at = warm
    for rnd in range(rounds):
        for k, c in enumerate(clients):
            for server in round_order(names, rnd, k):
                t = targets[server]
                cpu = cpu_seconds(t.proc.pid)
                r = run_loadgen(loadgen, server, t.url, t.root, t.jobs[at : at + requests], c, work)
                r["cpu_ms_per_cert"] = (cpu_seconds(t.proc.pid) - cpu) * 1000 / max(1, r["ok"])
                r["load1"] = os.getloadavg()[0]  # the machine's other tenants, for the report
                runs[server][str(c)].append(r)
                print(
                    f"round {rnd + 1} {server:10} {c:3} clients: {r['certs_per_s']:7.1f} certs/s "
                    f"p50 {r['p50_ms']:6.2f} ms p99 {r['p99_ms']:7.2f} ms "
                    f"CPU {r['cpu_ms_per_cert']:5.2f} ms/cert load {r['load1']:5.2f} errors {r['errors']}"
                    + (f" ({r['first_error']})" if r["errors"] else ""),
                    flush=True,
                )
            at += requests
    return runs


if __name__ == "__main__":
    sys.exit(main())
