"""Full mTLS handshakes per second against one service: fresh connections, a bounded number.

Each connection is new (no session resumption: Python's client resumes only when handed a
session, and we never do), completes the TLS handshake with the client certificate and one
`GET /hello`, so the server has verified the client's chain against its CRL index before it
answers. The request is what proves the handshake was accepted: under TLS 1.3 the client's
handshake completes before the server has judged the client certificate.

A few client threads keep the server busy (the ssl module releases the GIL during the
handshake). The figure compares the same service with and without a large CRL on the same
machine a minute apart; on a shared machine it is a figure for people, never a verdict.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from zt.lab import mtls_client
from zt.lab.identity import LabIdentity


@dataclass(frozen=True)
class HandshakeRate:
    service: str
    handshakes: int  # attempted
    ok: int  # answered 200
    seconds: float
    threads: int
    failures: tuple[str, ...]  # error/reason of the first few failures
    load_average: float  # the machine's 1-minute load average when the round ended: context for the figure

    @property
    def per_second(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "service": self.service,
            "handshakes": self.handshakes,
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "threads": self.threads,
            "per_second": round(self.per_second, 1),
            "failures": list(self.failures),
            "load_average": round(self.load_average, 2),
        }


def measure(
    service: str, url: str, bundle: Path, identity: LabIdentity, *, handshakes: int = 300, threads: int = 4
) -> HandshakeRate:
    """`handshakes` fresh mTLS connections with one GET /hello each, spread over `threads`."""
    ctx = mtls_client.context(bundle, identity)  # loaded once: the client's cost stays out of the figure
    remaining = [handshakes]
    ok = [0]
    failures: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            r = mtls_client.get(url + "/hello", bundle=bundle, identity=identity, ctx=ctx, timeout=10)
            with lock:
                if r.ok and r.status == 200:
                    ok[0] += 1
                elif len(failures) < 5:
                    failures.append(f"{r.error}/{r.reason}/{r.status}: {r.detail[:120]}")

    pool = [threading.Thread(target=worker, name=f"handshake-{i}", daemon=True) for i in range(threads)]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=120)
    elapsed = time.perf_counter() - t0
    return HandshakeRate(service, handshakes, ok[0], elapsed, threads, tuple(failures), os.getloadavg()[0])
