"""Both real services check a generation's bundle against its `bundle.pem.sha256` (CONTRACT B,
docs/contracts.md section 2, the reader's contract).

The tampered bundle used here is the real one plus a stranger's root: the new generation's
chain still verifies against it, so only the checksum can refuse it (without the check, the
reload would succeed and serve the new serial). At start the service exits 1; on reload the
old identity keeps serving, the failed reload is counted and logged with reason
`bundle_checksum_mismatch`. The twins: the same generation with a matching checksum file
starts and reloads.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_ca
from tests.native.pair import KINDS, TD, Pair
from zt.lab import metrics_scrape, process
from zt.lab.cert_copy import point_current
from zt.lab.services import RunningService, start_service, wait_ready


def replace(path: Path, data: bytes) -> None:
    """Whatever the file's mode (the agent writes some read-only): a new file renamed over it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_checksum(gen: Path, bundle: bytes) -> None:
    """sha256sum format, as the agent writes it: `<64 hex>  bundle.pem\\n`."""
    replace(gen / "bundle.pem.sha256", f"{hashlib.sha256(bundle).hexdigest()}  bundle.pem\n".encode())


def tamper(gen: Path, stranger_root: bytes) -> bytes:
    """The agent's checksum of the verified bundle, then a bundle that also trusts a stranger;
    returns the original bundle."""
    bundle = (gen / "bundle.pem").read_bytes()
    write_checksum(gen, bundle)
    replace(gen / "bundle.pem", bundle + stranger_root)
    return bundle


def stranger_root(tmp: Path) -> bytes:
    (tmp / "stranger").mkdir()
    return make_ca(tmp / "stranger").paths.bundle.read_bytes()


def reload_lines(svc: RunningService) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in svc.proc.log_text().splitlines() if x.startswith("{")]
    return [x for x in lines if x.get("event") == "reload"]


@pytest.mark.parametrize("service", KINDS)
def test_start_refuses_tampered_bundle_and_accepts_matching_one(service: str, tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    p = Pair(ca, {}, {}, tmp_path)
    me = p.identity(service)
    gen = me.generation()
    original = tamper(gen, stranger_root(tmp_path))
    svc = start_service(service, service, me.cert_dir, tmp_path, expect_peer=TD + "x")
    try:
        process.wait_until(f"{service} to exit", lambda: not svc.proc.alive(), timeout=60)
        assert svc.proc.popen.returncode == 1, svc.proc.log_tail()
        assert "bundle_checksum_mismatch" in svc.proc.log_text(), svc.proc.log_tail()
    finally:
        svc.proc.stop()

    # The twin: the bundle the checksum names; the same generation starts and serves.
    replace(gen / "bundle.pem", original)
    client = p.identity("client")
    run2 = tmp_path / "run2"
    run2.mkdir()
    svc = start_service(service, service, me.cert_dir, run2, expect_peer=TD + "x")
    try:
        wait_ready(svc, ca.paths.bundle, client)
        p.services[service] = svc
        assert p.get(service, "/hello", client).status == 200
    finally:
        svc.proc.stop()


@pytest.mark.parametrize("service", KINDS)
def test_reload_refuses_tampered_bundle_keeps_old_identity(service: str, tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    p = Pair(ca, {}, {}, tmp_path)
    me = p.identity(service)
    client = p.identity("client")
    write_checksum(me.generation(), me.bundle.read_bytes())
    svc = start_service(service, service, me.cert_dir, tmp_path, expect_peer=TD + "x")
    p.services[service] = svc
    try:
        wait_ready(svc, ca.paths.bundle, client)
        old_serial = me.serial
        failures = metrics_scrape.counter(svc.metrics_url, "mtls_reloads_total", result="failure")

        # A good new generation, tampered before it becomes `current`: the service watches the
        # directory (service-b) or polls (service-a), and a reload between an in-place swap and
        # the tamper would load the good bundle, leaving nothing for SIGHUP to refuse.
        staging = tmp_path / "staging"
        assert ca.ztca("issue", service, "--out", str(staging)).code == 0
        gen = os.readlink(staging / "current")
        original = tamper(staging / gen, stranger_root(tmp_path))
        os.rename(staging / gen, me.cert_dir / gen)
        point_current(me.cert_dir, gen)
        new_serial = me.serial
        assert new_serial != old_serial
        svc.proc.signal(signal.SIGHUP)

        # The count and the log line are two writes: CI once read the log between them (the
        # line not there yet), so the wait is for both.
        process.wait_until(
            f"{service} to count and log a failed reload",
            lambda: (
                metrics_scrape.counter(svc.metrics_url, "mtls_reloads_total", result="failure") > failures
                and any(x.get("result") == "failure" for x in reload_lines(svc))
            ),
            timeout=15,
        )
        failed = [x for x in reload_lines(svc) if x.get("result") == "failure"]
        assert failed and "bundle_checksum_mismatch" in failed[-1]["reason"], failed
        assert failed[-1]["new_serial"] == old_serial
        r = p.get(service, "/hello", client)
        assert r.status == 200 and r.body["serial"] == old_serial, r
        assert r.peer_serial == old_serial  # the certificate the handshake presented
        assert metrics_scrape.counter(svc.metrics_url, "mtls_rotation_total", result="success") == 0

        # The same generation with its bundle restored is served on the next reload.
        replace(me.generation() / "bundle.pem", original)
        svc.proc.signal(signal.SIGHUP)
        process.wait_until(
            f"{service} to serve the repaired generation",
            lambda: p.get(service, "/hello", client).body.get("serial") == new_serial,
            timeout=15,
        )
    finally:
        svc.proc.stop()
