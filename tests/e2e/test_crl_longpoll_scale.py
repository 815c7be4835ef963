"""What 1,000 long-poll waiters cost a real zt-crl process, and how fast a new CRL reaches them.

A separate client process (tests/e2e/crl_waiters.py) holds 1,000 conditional GETs with
`Prefer: wait=30` against a publisher started with its defaults; the test reads the
publisher's RSS and CPU from /proc while they are held, then publishes a new CRL the way the
CA side does (a new file renamed over crl.der) and measures, per waiter, the time from the
rename to its complete 200 answer. It prints the numbers (run with `-s` to see them; the
figures in docs/crl-publisher.md come from here) and asserts only correctness: every waiter was
held, and every one got the new CRL, none an error. Timings are not asserted: the machine is
shared.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.conftest import CaDir, CrlServer
from tests.e2e.test_crl_longpoll import metric
from tests.e2e.test_crl_publisher import crl_number, publish
from zt.ca.authority import Authority
from zt.ca.crl import RevokedEntry, sign_crl
from zt.lab import process
from zt.ra.store import Store

WAITERS = 1000
REST_SECONDS = 3.0
CLIENT_DEADLINE = 45.0
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (proc(5), /proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def cpu_share(pid: int, seconds: float) -> float:
    """The process's CPU use over `seconds` of wall time, as a fraction of one core."""
    before, start = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.monotonic() - start)


def next_crl(ca: CaDir, serial: int) -> bytes:
    """The CRL the CA side would publish next: the current number + 1, one more entry, signed
    by the real intermediate."""
    current = x509.load_der_x509_crl(ca.paths.crl_der.read_bytes())
    store = Store(ca.paths.store)
    authority = Authority.load(ca.paths, store.meta("trust_domain") or "")
    now = dt.datetime.now(dt.UTC)
    crl = sign_crl(
        authority,
        [RevokedEntry(serial, now - dt.timedelta(seconds=1))],
        crl_number(current) + 1,
        now,
        now + dt.timedelta(hours=1),
    )
    return crl.public_bytes(serialization.Encoding.DER)


def summary(values: list[float]) -> dict[str, float]:
    """min, p50, p99, max (nearest rank); all 0 when there is nothing to summarise."""
    ordered = sorted(values) or [0.0]

    def rank(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    return {"min": ordered[0], "p50": rank(50), "p99": rank(99), "max": ordered[-1]}


def test_thousand_waiters_all_get_the_new_crl(ca: CaDir, crl_server: CrlServer, tmp_path: Path) -> None:
    pid = crl_server.proc.pid
    etag = httpx.get(crl_server.url + "/crl").headers["etag"]
    idle_rss, idle_cpu = rss_mib(pid), cpu_share(pid, REST_SECONDS)
    new_der = next_crl(ca, 0x1234)
    repo = Path(__file__).resolve().parents[2]
    results_file, client_err = tmp_path / "waiters.json", tmp_path / "waiters.err"
    argv = [sys.executable, "-m", "tests.e2e.crl_waiters", crl_server.url, etag, str(WAITERS), "30"]
    with client_err.open("w") as err_out:
        client = subprocess.Popen(
            [*argv, str(CLIENT_DEADLINE), str(results_file)],
            cwd=repo,
            env={**os.environ, "PYTHONPATH": str(repo)},
            stdout=subprocess.PIPE,
            stderr=err_out,
            text=True,
        )
    try:
        assert client.stdout is not None
        assert client.stdout.readline().strip() == "sent", client_err.read_text()
        process.wait_until(
            f"{WAITERS} requests held",
            lambda: metric(crl_server.url, "zt_crl_longpoll_waiters") == WAITERS,
            timeout=30,
        )
        held_rss, held_cpu = rss_mib(pid), cpu_share(pid, REST_SECONDS)
        cpu_before_wake = cpu_seconds(pid)
        published = time.monotonic()
        publish(ca, new_der)
        client.wait(timeout=CLIENT_DEADLINE + 15)
        wake_cpu = cpu_seconds(pid) - cpu_before_wake
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        if client.stdout is not None:
            client.stdout.close()
    err = client_err.read_text()
    assert client.returncode == 0, err
    results = json.loads(results_file.read_text())
    errors = [r for r in results if "error" in r or r["status"] != 200]
    new_etag = '"' + hashlib.sha256(new_der).hexdigest()[:32] + '"'
    wrong = [
        r
        for r in results
        if "sha256" in r and (r["sha256"] != hashlib.sha256(new_der).hexdigest() or r["etag"] != new_etag)
    ]
    latencies = [(r["at"] - published) * 1000 for r in results if "at" in r]
    after_rss = rss_mib(pid)
    spread = ", ".join(f"{name} {value:.0f} ms" for name, value in summary(latencies).items())
    print(
        f"\nzt-crl with {WAITERS} long-poll waiters: rename -> 200 {spread}; "
        f"publisher CPU to answer them all {wake_cpu * 1000:.0f} ms; "
        f"RSS {idle_rss:.1f} MiB idle, {held_rss:.1f} MiB holding them "
        f"({(held_rss - idle_rss) * 1024 / WAITERS:.1f} KiB each), {after_rss:.1f} MiB after; "
        f"CPU at rest {idle_cpu * 100:.2f}% of a core idle, {held_cpu * 100:.2f}% holding them; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    assert not errors, f"{len(errors)} waiters failed, e.g. {errors[:3]}; client stderr: {err[-500:]}"
    assert not wrong, f"{len(wrong)} waiters got something else than the new CRL, e.g. {wrong[:3]}"
    assert len(latencies) == WAITERS
    assert metric(crl_server.url, "zt_crl_longpoll_waiters") == 0
    assert metric(crl_server.url, 'zt_crl_longpoll_total{outcome="changed"}') == WAITERS
