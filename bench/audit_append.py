"""Benchmark: what the fsync'd audit log append costs per issuance.

Issues certificates in-process through RegistrationAuthority.issue (CSR check, signing, one
store transaction with its audit row) on a fresh CA, alternating between the real store (the
row is appended to audit.jsonl and fsync'd after COMMIT, under the write lock) and the same
store with the file append switched off (the row still committed). Rounds alternate so
machine noise hits both alike; the median of the per-round means is reported. Both store
durabilities: `full` (the RA's default; SQLite fsyncs its WAL at every commit) and `normal`.

    python -m bench.audit_append [--requests 200] [--rounds 4] [--json out.json]

No HTTP or TLS: the HTTP path adds the same absolute cost per request (measure it with
bench/ra_issue.py against the tree before this change).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.conftest import make_ca
from zt.agent.material import build_csr, csr_pem
from zt.auditlog import SyncResult
from zt.ca.authority import Authority
from zt.ca.layout import CaPaths
from zt.clock import SystemClock
from zt.pki.keys import generate_key
from zt.ra.service import RegistrationAuthority
from zt.ra.store import Store


def _ra(ca_dir: Path, durable: bool, audit_file: bool) -> RegistrationAuthority:
    paths = CaPaths(ca_dir)
    store = Store(paths.store, durable=durable)
    if not audit_file:
        store.sync_audit_locked = lambda conn: SyncResult(("off",))  # type: ignore[method-assign]
    return RegistrationAuthority(store, Authority.load(paths, "zt.lab"), paths, SystemClock())


def one_round(tmp: Path, n: int, durable: bool, audit_file: bool) -> float:
    """Mean milliseconds per issuance over n issuances."""
    ca = make_ca(tmp)
    setup = _ra(ca.dir, durable=False, audit_file=True)
    jobs = []
    for i in range(n):
        reg = setup.register(f"b{i}", dt.timedelta(hours=1))
        jobs.append((reg.token, csr_pem(build_csr(generate_key(), reg.identity.spiffe_id))))
    setup.store.close()
    ra = _ra(ca.dir, durable=durable, audit_file=audit_file)
    start = time.perf_counter()
    for token, csr in jobs:
        ra.issue(token, csr)
    elapsed = time.perf_counter() - start
    ra.store.close()
    return elapsed / n * 1000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    results = {}
    for durability in ("full", "normal"):
        per: dict[bool, list[float]] = {True: [], False: []}
        for r in range(args.rounds):
            for audit_file in (r % 2 == 0, r % 2 != 0):
                with tempfile.TemporaryDirectory() as tmp:
                    per[audit_file].append(one_round(Path(tmp), args.requests, durability == "full", audit_file))
        on, off = statistics.median(per[True]), statistics.median(per[False])
        results[durability] = {
            "ms_per_issue_with_audit_file": round(on, 2),
            "ms_per_issue_without": round(off, 2),
            "audit_append_ms": round(on - off, 2),
            "rounds_with": [round(x, 2) for x in per[True]],
            "rounds_without": [round(x, 2) for x in per[False]],
        }
        print(f"durability={durability}: " + json.dumps(results[durability]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
