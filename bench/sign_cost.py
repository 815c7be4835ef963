"""Benchmark: what one signature costs our CA locally, to compare with an HSM's or a KMS's.

docs/hsm-kms.md weighs moving the intermediate key into an HSM or a cloud KMS. The question is
how much of an issuance is the signature itself: that is the part a remote signer replaces. This
times, in-process on a fresh CA (EC P-256 intermediate, as `ztca init` makes):

- `ecdsa_sign`: one raw ECDSA P-256 / SHA-256 signature over a certificate-sized message;
- `sign_leaf`: `Authority.sign_leaf` (build the TBSCertificate, extensions, sign): one leaf;
- `sign_crl`: `zt.ca.crl.sign_crl` with 0 and 1,000 entries (one signature each).

    python -m bench.sign_cost [--rounds 2000] [--json out.json]

Best of five passes, mean per operation: a lower bound on a shared machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import make_ca
from zt.ca.authority import Authority
from zt.ca.crl import RevokedEntry, sign_crl
from zt.ca.layout import CaPaths
from zt.clock import utcnow
from zt.pki.keys import generate_key
from zt.spiffe import workload_id


def per_op_ms(fn: Callable[[], object], rounds: int, passes: int = 5) -> float:
    best = float("inf")
    for _ in range(passes):
        t0 = time.perf_counter()
        for _ in range(rounds):
            fn()
        best = min(best, (time.perf_counter() - t0) / rounds)
    return best * 1000


def measure(rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        auth = Authority.load(CaPaths(make_ca(Path(tmp)).dir), "zt.lab")
        now = utcnow()
        sid = workload_id("zt.lab", "bench")
        pub = generate_key().public_key()
        key = auth.key
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        message = b"\x30" * 400  # about a leaf's TBSCertificate
        entries_1k = [RevokedEntry(10_000 + i, now - dt.timedelta(minutes=1)) for i in range(1000)]
        return {
            "ecdsa_sign_ms": per_op_ms(lambda: key.sign(message, ec.ECDSA(hashes.SHA256())), rounds),
            "sign_leaf_ms": per_op_ms(lambda: auth.sign_leaf(pub, sid, dt.timedelta(hours=1), now, None), rounds),
            "sign_crl_0_ms": per_op_ms(lambda: sign_crl(auth, [], 1, now, now + dt.timedelta(hours=1)), rounds),
            "sign_crl_1000_ms": per_op_ms(
                lambda: sign_crl(auth, entries_1k, 1, now, now + dt.timedelta(hours=1)), max(1, rounds // 50)
            ),
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.sign_cost", description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2000)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.rounds < 1:
        print("--rounds must be at least 1", file=sys.stderr)
        return 2
    got = measure(args.rounds)
    for k, v in got.items():
        print(f"{k:<18} {v:8.3f} ms   ({1000 / v:,.0f}/s on one core)")
    if args.json:
        args.json.write_text(json.dumps(got, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
