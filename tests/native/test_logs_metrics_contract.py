"""The log line schema and the certificate metrics of both services, on the real binaries
(CONTRACT L and M; docs/logs.md, docs/contracts.md sections 6 and 7).

One pair of services is driven through the events the schema names (a request, a rejected
handshake with and without a certificate, a rotation, a CRL-only reload), and then every line
each service wrote is checked with `zt.logschema` (the JSON Schema every component shares),
plus the contract's specifics the schema cannot see: `component` is the `--name`, the old
`service` key is gone, a rejected certificate is named by its serial, a CRL-only reload says
`changed: ["crl"]`. The metrics: `mtls_cert_expiry_seconds` is seconds until notAfter at
scrape time, `mtls_cert_not_after_timestamp_seconds` the notAfter itself.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_ca
from tests.native.pair import KINDS, TD, Pair, running_pair
from zt import logschema
from zt.lab import metrics_scrape, process
from zt.lab.identity import LabIdentity


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with running_pair(tmp_path_factory.mktemp("logcontract")) as p:
        yield p


def lines_of(pair: Pair, service: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in pair.services[service].proc.log_text().splitlines() if x.startswith("{")]


def wait_line(pair: Pair, service: str, what: str, pred: Any, timeout: float = 15) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def seen() -> bool:
        found[:] = [x for x in lines_of(pair, service) if pred(x)]
        return bool(found)

    process.wait_until(f"{service} to log {what}", seen, timeout=timeout)
    return found[-1]


def not_after(identity: LabIdentity) -> float:
    svid = json.loads((identity.generation() / "svid.json").read_text())
    return datetime.fromisoformat(svid["not_after"].replace("Z", "+00:00")).timestamp()


def hup(pair: Pair, service: str) -> None:
    """What the agent does after writing: SIGHUP (service-b also watches its files)."""
    os.kill(int(pair.services[service].pid_file.read_text()), signal.SIGHUP)


@pytest.mark.parametrize("service", KINDS)
def test_cert_expiry_is_seconds_left_at_scrape_time(pair: Pair, service: str) -> None:
    me = pair.ids[service]
    url = pair.services[service].metrics_url
    before = time.time()
    first = metrics_scrape.scrape(url)
    after = time.time()
    left = metrics_scrape.value(first, "mtls_cert_expiry_seconds")
    assert metrics_scrape.value(first, "mtls_cert_not_after_timestamp_seconds") == not_after(me)
    # Seconds until notAfter, as of this scrape (whole-second rounding allowed either way).
    assert not_after(me) - after - 1 <= left <= not_after(me) - before + 1, (left, not_after(me), before)
    assert 0 < left < 400 * 86400
    time.sleep(2.1)
    later = metrics_scrape.value(metrics_scrape.scrape(url), "mtls_cert_expiry_seconds")
    assert 1 <= left - later <= 4, (left, later)  # it counts down between scrapes, not at reload


@pytest.mark.parametrize("service", KINDS)
def test_every_line_follows_the_log_schema(pair: Pair, service: str, tmp_path: Path) -> None:
    svc = pair.services[service]
    client = pair.ids["client"]
    # A request, a refusal without a certificate, a refusal of a presented certificate.
    assert pair.get(service, "/hello", client).status == 200
    assert not pair.get(service, "/hello", None).ok
    other = make_ca(tmp_path)
    other.register("client")
    assert other.ztca("issue", "client", "--out", str(tmp_path / "impostor")).code == 0
    impostor = LabIdentity("client", TD + "client", tmp_path / "impostor")
    assert not pair.get(service, "/hello", impostor).ok
    # A CRL-only reload, then a rotation.
    crl = pair.ca.paths.crl_pem.read_bytes()
    tmp = svc.cert_dir / ".crl.tmp"
    tmp.write_bytes(crl)
    os.replace(tmp, svc.cert_dir / "crl.pem")
    hup(pair, service)
    crl_reload = wait_line(
        pair, service, "a CRL-only reload", lambda x: x.get("event") == "reload" and "crl" in (x.get("changed") or [])
    )
    old_serial = pair.ids[service].serial
    assert pair.ca.ztca("issue", service, "--out", str(svc.cert_dir)).code == 0
    new_serial = pair.ids[service].serial
    hup(pair, service)
    rotation = wait_line(pair, service, "the rotation", lambda x: x.get("event") == "rotation")
    wait_line(pair, service, "a handshake_rejected line with a serial", lambda x: "peer_serial" in x)

    problems = logschema.validate_text(svc.proc.log_text())
    assert not problems, "\n".join(f"{service} log line {n}: {msg}" for n, msg in problems[:20])
    lines = lines_of(pair, service)
    assert lines and all(x["component"] == service and "service" not in x for x in lines), lines[:3]

    assert crl_reload["result"] == "success" and crl_reload["changed"] == ["crl"], crl_reload
    assert crl_reload["old_serial"] == crl_reload["new_serial"] == old_serial
    assert rotation["old_serial"] == old_serial and rotation["new_serial"] == new_serial, rotation
    assert int(new_serial, 16) and new_serial == format(int(new_serial, 16), "x")
    loaded = [x for x in lines if x["event"] == "crl_loaded"]
    assert loaded and all(isinstance(x["crl_number"], int) for x in loaded), loaded
    rejected = [x for x in lines if x["event"] == "handshake_rejected"]
    no_cert = [x for x in rejected if x["reason"] == "no_client_cert"]
    assert no_cert and all(x.get("peer_serial") is None for x in no_cert), no_cert
    foreign = [x for x in rejected if x.get("peer_serial") == impostor.serial]
    assert foreign and foreign[-1]["reason"] == "untrusted", rejected
    assert foreign[-1]["peer_spiffe_id"] == TD + "client" and foreign[-1]["peer_addr"].startswith("127.0.0.1:")
    assert pair.get(service, "/hello", client).status == 200  # still serving after all that
