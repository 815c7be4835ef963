"""The native services' mTLS handshakes per server CPU-second against their baselines (issue 15).

    python -m bench.handshakes [--rounds 6] [--handshakes 800] [--warmup 750] [--warmup-chunks 8] [--conns 4]

Two pairs, side by side in one run, each pair with the same certificate, key and bundle:

- service-a (C++, OpenSSL) against `openssl s_server` with service-a's TLS settings (TLS 1.2-1.3,
  the same TLS 1.2 suites, server preference, no renegotiation, no session cache, no tickets);
- service-b (Java, JSSE) against a bare JSSE server (zt.serviceb.bench.BareJsseServer in
  build/service-b.jar): the JDK's stock key and trust managers over service-b's keystore.p12 and
  truststore.p12, service-b's protocols, suites and JSSE properties, one thread per connection.

The services run as the lab runs them, with their cert dir's CRL (test PKI, one revoked
identity) and every check they make; the baselines verify the client's chain against the same
roots and nothing more. So a ratio below 1 is what the services do beyond a TLS stack: the CRL
index, the SPIFFE rules, the handshake deadline, logging and metrics, connection tracking.

One compiled client (bench/handshaker, Go, stdlib only) drives all four: a new TCP connection
and a full TLS 1.3 handshake each (no session cache; X25519; client certificate), counted when
the server has accepted it (its clean close after the client's close_notify). The figure is
handshakes per CPU-second of the server process (user + system time from /proc/PID/stat over the
round, every thread included: JIT, GC, the services' reload polling), which is what a server
costs whatever else the 2 shared cores are doing; wall-clock rates are printed too but depend on
the client and the neighbours. The JVMs' JIT compiler threads are counted apart as well
(/proc/PID/task/*/comm): on 2 shared cores C2 was still compiling after 10,000 handshakes, 10-30%
of a JVM's CPU, and how much it spends in a round is luck more than design, so the table gives
the ratio without the JIT's CPU next to the headline one. Each server is warmed up in chunks of
`--warmup` handshakes until the JIT takes under 10% of a chunk's CPU (OpenSSL: one chunk), at
most `--warmup-chunks`; then rounds in which the order of the four rotates. Ratios are medians
of the rounds: a figure to compare, never a pass/fail threshold.

Checks that must hold (exit 1 otherwise): every measured handshake succeeded, none resumed; both
members of a pair negotiated the same protocol, suite and group; every server refused a client of
a foreign trust domain; the services refused the revoked client (their CRL is in force) while
the baselines, which have no CRL, accepted it. Results: reports/bench/handshakes.{json,md}, the
servers' logs under reports/bench/handshakes-logs/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zt.lab import core, process
from zt.lab.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
BARE_JSSE_CLASS = "zt.serviceb.bench.BareJsseServer"
TRUST_DOMAIN = "zt.lab"
# service-a's TLS 1.2 suites (native/cpp/src/tls_context.cc kTls12Ciphers); TLS 1.3's stay OpenSSL's defaults.
SERVICE_A_TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)
# (service, its baseline): the order of the table.
PAIRS = (("service-a", "openssl s_server"), ("service-b", "bare JSSE"))
# Warm-up ends once the JIT compiler threads take less than this share of a chunk's CPU.
JIT_SETTLED = 0.10


@dataclass
class Server:
    name: str
    proc: process.Proc
    port: int
    rounds: list[dict[str, Any]] = field(default_factory=list)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass(frozen=True)
class Client:
    """One identity of the test PKI, as the handshaker takes it."""

    chain: Path
    key: Path
    roots: Path


def build_handshaker(tools: Path) -> Path:
    out = tools / "bin" / "zt-handshaker"
    subprocess.run(["go", "build", "-o", str(out), "."], cwd=ROOT / "bench" / "handshaker", check=True)
    return out


def handshake(tool: Path, addr: str, client: Client, n: int, conns: int) -> dict[str, Any]:
    argv = [str(tool), "-addr", addr, "-cert", str(client.chain), "-key", str(client.key), "-roots", str(client.roots)]
    r = subprocess.run([*argv, "-n", str(n), "-conns", str(conns)], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"handshaker against {addr} failed: {r.stderr.strip()}")
    result: dict[str, Any] = json.loads(r.stdout)
    return result


@dataclass(frozen=True)
class Cpu:
    """CPU seconds of a process so far: all of it, and its JIT compiler threads' part."""

    total: float
    jit: float

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.total - other.total, self.jit - other.jit)


def cpu_of(pid: int) -> Cpu:
    """User + system CPU time of process `pid` (/proc/PID/stat: every thread, exited ones too),
    and of its live HotSpot compiler threads ("C1/C2 CompilerThread<n>" in /proc/PID/task/*/comm):
    what the JIT spent, which no amount of warm-up brings to zero on this loaded machine."""
    tick = os.sysconf("SC_CLK_TCK")

    def ticks(stat: str) -> int:
        fields = stat.rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    jit = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            if (task / "comm").read_text().startswith(("C1 Compiler", "C2 Compiler")):
                jit += ticks((task / "stat").read_text())
        except OSError:
            continue  # the thread ended meanwhile
    return Cpu(ticks(Path(f"/proc/{pid}/stat").read_text()) / tick, jit / tick)


def make_pki(work: Path) -> Path:
    """The native suites' test PKI; each service's cert dir gets the CRL (revokes ids/revoked)."""
    pki = work / "pki"
    script = ROOT / "native" / "testpki" / "make_test_pki.py"
    subprocess.run([sys.executable, str(script), "all", str(pki)], check=True, stdout=subprocess.DEVNULL)
    for name in ("service-a", "service-b"):
        shutil.copyfile(pki / "crl" / "crl.pem", pki / "ids" / name / "crl.pem")
    return pki


def client(pki: Path, name: str) -> Client:
    d = pki / "ids" / name
    return Client(d / "chain.pem", d / "key.pem", pki / "ca" / "bundle.pem")


def start_all(pki: Path, logs: Path, tool: Path, probe: Client) -> dict[str, Server]:
    jar = BUILD / "service-b.jar"
    for need in (BUILD / "service-a", BUILD / "service-b", jar):
        if not need.exists():
            raise SystemExit(f"{need} is missing: build the services first (make native)")
    with zipfile.ZipFile(jar) as z:
        if BARE_JSSE_CLASS.replace(".", "/") + ".class" not in z.namelist():
            raise SystemExit(f"{jar} has no {BARE_JSSE_CLASS}: rebuild it (make native-java)")
    a, b = pki / "ids" / "service-a", pki / "ids" / "service-b"
    inter = pki / "ca" / "intermediate.pem"
    ports = {name: free_port() for pair in PAIRS for name in pair}

    def service(kind: str, cert_dir: Path) -> list[str]:
        return [
            str(BUILD / kind),
            *core.service_args(
                name=kind,
                cert_dir=str(cert_dir),
                listen=f"127.0.0.1:{ports[kind]}",
                metrics_listen=f"127.0.0.1:{free_port()}",
                expect_peer=f"spiffe://{TRUST_DOMAIN}/svc/client",
                crl_stale="refuse",
                pid_file=None,
            ),
        ]

    s_server = ["openssl", "s_server", "-accept", f"127.0.0.1:{ports['openssl s_server']}"]
    s_server += ["-cert", str(a / "cert.pem"), "-key", str(a / "key.pem"), "-cert_chain", str(inter)]
    s_server += ["-CAfile", str(a / "bundle.pem")]
    s_server += ["-Verify", "5", "-verify_return_error", "-verify_quiet", "-quiet", "-www"]
    s_server += ["-min_protocol", "TLSv1.2", "-max_protocol", "TLSv1.3", "-cipher", SERVICE_A_TLS12_CIPHERS]
    s_server += ["-serverpref", "-no_renegotiation", "-no_cache", "-no_ticket", "-num_tickets", "0"]
    bare = ["java", "-cp", str(jar), BARE_JSSE_CLASS, str(b), str(ports["bare JSSE"])]
    argvs = {
        "service-a": service("service-a", a),
        "openssl s_server": s_server,
        "service-b": service("service-b", b),
        "bare JSSE": bare,
    }
    servers: dict[str, Server] = {}
    try:
        for name, argv in argvs.items():
            log = logs / (name.replace(" ", "-") + ".log")
            servers[name] = Server(name, process.start(name, argv, log), ports[name])
        for s in servers.values():
            process.wait_until(
                f"{s.name}: a mutual-TLS handshake on {s.addr}",
                lambda s=s: handshake(tool, s.addr, probe, 1, 1)["ok"] == 1,  # type: ignore[misc]
                timeout=60,
                interval=0.5,
                proc=s.proc,
            )
    except BaseException:
        for s in servers.values():
            s.proc.stop()
        raise
    return servers


def refusal_checks(tool: Path, servers: dict[str, Server], pki: Path) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Every server refuses a foreign client; the services (CRL in force) refuse the revoked
    client, the baselines (no CRL) accept it. What each server answered, and what did not hold."""
    seen: dict[str, dict[str, str]] = {}
    problems: list[str] = []
    services = {svc for svc, _ in PAIRS}
    for s in servers.values():
        seen[s.name] = {}
        for who, refused in (("foreign", True), ("revoked", s.name in services)):
            r = handshake(tool, s.addr, client(pki, who), 1, 1)
            seen[s.name][who] = "accepted" if r["ok"] else f"refused ({r.get('first_error', '')})"
            if bool(r["ok"] == 0) != refused:
                problems.append(f"{s.name}: the {who} client was {seen[s.name][who]}, expected the opposite")
    return seen, problems


def warm_up(tool: Path, s: Server, good: Client, chunk: int, chunks: int, conns: int) -> list[dict[str, Any]]:
    """Chunks of `chunk` handshakes until the JIT's share of the chunk's CPU falls below
    JIT_SETTLED (at once for OpenSSL: it has none), at most `chunks` of them."""
    done: list[dict[str, Any]] = []
    for _ in range(chunks):
        before = cpu_of(s.proc.pid)
        w = handshake(tool, s.addr, good, chunk, conns)
        used = cpu_of(s.proc.pid) - before
        share = used.jit / used.total if used.total > 0 else 0.0
        done.append({"ok": w["ok"], "errors": w["errors"], "cpu_seconds": round(used.total, 2), "jit_share": share})
        print(f"warm-up {s.name:17} {w['ok']:5}/{chunk} handshakes  JIT {share:4.0%} of its CPU", flush=True)
        if share < JIT_SETTLED:
            break
    return done


def measure(tool: Path, servers: dict[str, Server], good: Client, rounds: int, n: int, conns: int) -> None:
    """`rounds` rounds in which the order of the servers rotates."""
    names = list(servers)
    for rnd in range(rounds):
        shift = rnd % len(names)
        for name in names[shift:] + names[:shift]:
            s = servers[name]
            before = cpu_of(s.proc.pid)
            r = handshake(tool, s.addr, good, n, conns)
            used = cpu_of(s.proc.pid) - before
            r["cpu_seconds"] = round(used.total, 3)
            r["jit_cpu_seconds"] = round(used.jit, 3)
            r["per_cpu_second"] = round(r["ok"] / used.total, 1) if used.total > 0 else None
            rest = used.total - used.jit
            r["per_cpu_second_without_jit"] = round(r["ok"] / rest, 1) if rest > 0 else None
            r["load_average"] = round(os.getloadavg()[0], 2)
            s.rounds.append(r)
            print(
                f"round {rnd + 1} {name:17} {r['ok']:5} ok {r['errors']:3} errors  "
                f"{r['per_second']:7.1f}/s wall  {r['per_cpu_second'] or 0:7.1f}/CPU-s  "
                f"({used.total:.2f} CPU-s, JIT {used.jit:.2f}; load {r['load_average']})"
                + (f"  first error: {r['first_error']}" if r["errors"] else ""),
                flush=True,
            )


def median_of(rounds: list[dict[str, Any]], key: str) -> tuple[float | None, list[float] | None]:
    xs = [r[key] for r in rounds if r.get(key)]
    return (round(statistics.median(xs), 1), [min(xs), max(xs)]) if xs else (None, None)


def ratios(svc: list[dict[str, Any]], base: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The ratio of the medians, and the median and range of the rounds' own ratios."""
    a, b = median_of(svc, key)[0], median_of(base, key)[0]
    by_round = [x[key] / y[key] for x, y in zip(svc, base, strict=True) if x.get(key) and y.get(key)]
    return {
        "ratio": round(a / b, 3) if a and b else None,
        "ratio_median_of_rounds": round(statistics.median(by_round), 3) if by_round else None,
        "ratio_range": [round(min(by_round), 3), round(max(by_round), 3)] if by_round else None,
    }


def summarise(servers: dict[str, Server]) -> dict[str, Any]:
    """Medians per server; per pair the ratios, of all CPU and of CPU outside the JIT."""
    per: dict[str, Any] = {}
    for s in servers.values():
        cpu, cpu_range = median_of(s.rounds, "per_cpu_second")
        total = sum(r["cpu_seconds"] for r in s.rounds)
        per[s.name] = {
            "per_cpu_second": cpu,
            "per_cpu_second_range": cpu_range,
            "per_cpu_second_without_jit": median_of(s.rounds, "per_cpu_second_without_jit")[0],
            "jit_share": round(sum(r["jit_cpu_seconds"] for r in s.rounds) / total, 3) if total > 0 else None,
            "per_second": round(statistics.median(r["per_second"] for r in s.rounds), 1),
            "cpu_ms_per_handshake": round(1000 / cpu, 3) if cpu else None,
            "ok": sum(r["ok"] for r in s.rounds),
            "errors": sum(r["errors"] for r in s.rounds),
            "resumed": sum(r["resumed"] for r in s.rounds),
            "negotiated": sorted({f"{r.get('protocol')} {r.get('suite')} {r.get('group')}" for r in s.rounds}),
        }
    pairs = {
        svc: {
            "baseline": base,
            **ratios(servers[svc].rounds, servers[base].rounds, "per_cpu_second"),
            "without_jit": ratios(servers[svc].rounds, servers[base].rounds, "per_cpu_second_without_jit"),
        }
        for svc, base in PAIRS
    }
    return {"servers": per, "pairs": pairs}


def pair_problems(summary: dict[str, Any]) -> list[str]:
    problems = []
    for name, s in summary["servers"].items():
        if s["errors"] or s["resumed"]:
            problems.append(f"{name}: {s['errors']} failed and {s['resumed']} resumed handshakes")
        if len(s["negotiated"]) != 1:
            problems.append(f"{name}: negotiated {s['negotiated']}")
    for svc, p in summary["pairs"].items():
        if summary["servers"][svc]["negotiated"] != summary["servers"][p["baseline"]]["negotiated"]:
            problems.append(f"{svc} and {p['baseline']} negotiated different parameters")
    return problems


def table(summary: dict[str, Any]) -> str:
    lines = [
        "| service vs baseline | handshakes / CPU-s, medians (range) | CPU ms / handshake | JIT share of CPU "
        "| ratio of medians | per-round ratio: median (range) | ratio without the JIT's CPU | wall /s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for svc, base in PAIRS:
        p = summary["pairs"][svc]
        a, b = summary["servers"][svc], summary["servers"][base]

        def span(s: dict[str, Any]) -> str:
            lo, hi = s["per_cpu_second_range"] or (None, None)
            return f"{s['per_cpu_second']} ({lo}-{hi})"

        def share(s: dict[str, Any]) -> str:
            return "-" if s["jit_share"] is None else f"{s['jit_share']:.0%}"

        lo, hi = p["ratio_range"] or (None, None)
        lines.append(
            f"| {svc} vs {base} | {span(a)} vs {span(b)} | {a['cpu_ms_per_handshake']} vs {b['cpu_ms_per_handshake']} "
            f"| {share(a)} vs {share(b)} | **{p['ratio']}** | {p['ratio_median_of_rounds']} ({lo}-{hi}) "
            f"| {p['without_jit']['ratio']} | {a['per_second']} vs {b['per_second']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=6, help="rounds; the order of the servers rotates each round")
    p.add_argument("--handshakes", type=int, default=800, help="handshakes per server per round")
    p.add_argument("--warmup", type=int, default=750, help="handshakes per warm-up chunk")
    p.add_argument("--warmup-chunks", type=int, default=8, help="at most this many warm-up chunks per server")
    p.add_argument("--conns", type=int, default=4, help="the client's connections in flight at once")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "bench")
    p.add_argument("--tools", type=Path, default=ROOT / ".tools")
    args = p.parse_args(argv)
    tool = build_handshaker(args.tools)
    logs = args.out / "handshakes-logs"
    shutil.rmtree(logs, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="zt-bench-handshakes-") as tmp:
        pki = make_pki(Path(tmp))
        good = client(pki, "client")
        servers = start_all(pki, logs, tool, good)
        try:
            refusals, problems = refusal_checks(tool, servers, pki)
            warm = {
                s.name: warm_up(tool, s, good, args.warmup, args.warmup_chunks, args.conns) for s in servers.values()
            }
            measure(tool, servers, good, args.rounds, args.handshakes, args.conns)
        finally:
            for s in servers.values():
                s.proc.stop()
    summary = summarise(servers)
    problems += pair_problems(summary)
    problems += [
        f"{name}: {sum(c['errors'] for c in cs)} failed warm-up handshakes"
        for name, cs in warm.items()
        if any(c["errors"] for c in cs)
    ]
    negotiated = "; ".join(f"{n}: {', '.join(s['negotiated'])}" for n, s in summary["servers"].items())
    title = (
        f"full mutual-TLS handshakes per server CPU-second, medians of {args.rounds} rotating rounds of "
        f"{args.handshakes} handshakes ({args.conns} connections in flight, {os.cpu_count()} CPUs); "
        "ratio = service / baseline"
    )
    md = table(summary)
    verdict = "all held" if not problems else "; ".join(problems)
    print(f"\n{title}\n{md}\nnegotiated: {negotiated}\nchecks: {verdict}")
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "rounds": args.rounds,
        "handshakes_per_round": args.handshakes,
        "warmup": warm,
        "conns": args.conns,
        "cpus": os.cpu_count(),
        "summary": summary,
        "refusals": refusals,
        "problems": problems,
        "runs": {s.name: s.rounds for s in servers.values()},
    }
    (args.out / "handshakes.json").write_text(json.dumps(doc, indent=2))
    (args.out / "handshakes.md").write_text(
        f"# Native services' handshakes per CPU-second vs their baselines\n\n{doc['when']}: {title}.\n\n{md}\n\n"
        f"Negotiated: {negotiated}.\n\nRefusals: {json.dumps(refusals)}\n\nChecks: {verdict}\n"
    )
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
