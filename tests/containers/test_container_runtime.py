"""The container runtime brings the Milestone 1 topology up for real, and takes it all down.

One lab for the module (a bring-up is a few seconds); each test asserts one property of the
deployment that is the container runtime's own: service-a calls service-b by network alias
over mTLS, identities are copied out of the agents' volumes, the isolation holds at run time,
the agent's signal crosses containers, a wait notices a container that exited, and nothing of
the run is left afterwards, also when the bring-up fails half-way. The milestone scenarios
themselves run on containers once, in `make test`'s last step (`zt-lab run --runtime docker`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest

from tests.containers.conftest import docker, require
from zt.lab import chaos_store, metrics_scrape, mtls_client, process
from zt.lab.container_runtime import LABEL_PID, LABEL_RUN, ContainerLab, ContainerRuntime, sweep_stale
from zt.lab.host_identities import LabError
from zt.lab.identity import LabIdentity
from zt.lab.topology import ServiceSpec, Topology

if TYPE_CHECKING:
    import docker as docker_sdk  # the SDK's types; `docker` here is the CLI helper from conftest


@pytest.fixture(scope="module")
def runtime(images: list[str]) -> ContainerRuntime:
    require(
        importlib.util.find_spec("testcontainers") is not None,
        "testcontainers is not installed in this venv (pip install testcontainers)",
    )
    return ContainerRuntime()


def runtime_client() -> docker_sdk.DockerClient:
    from testcontainers.core.docker_client import DockerClient

    return DockerClient().client


def leftovers(label: str) -> list[str]:
    out = []
    for kind in ("container", "network", "volume"):
        args = [kind, "ls", "-q", "--filter", f"label={label}"] + (["--all"] if kind == "container" else [])
        out += [f"{kind} {x}" for x in docker(*args).stdout.split()]
    return out


# Per module, and so once per run: `make test` distributes tests/ by file (--dist loadfile,
# docs/ci.md), so every test of this module runs in the worker that brought the lab up.
@pytest.fixture(scope="module")
def lab(runtime: ContainerRuntime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerLab]:
    running = runtime.start(Topology(), tmp_path_factory.mktemp("container-lab"))
    try:
        yield running
    finally:
        running.collect_logs(running.work_dir / "collected")
        running.stop()
    assert leftovers(f"{LABEL_RUN}={running.run}") == []


@pytest.fixture(scope="module")
def operator(lab: ContainerLab) -> LabIdentity:
    return lab.client_identity("operator")


def test_service_a_calls_service_b_by_network_alias(lab: ContainerLab, operator: LabIdentity) -> None:
    target = lab.service_url("service-b", from_service=True) + "/hello"
    assert target == "https://service-b:8081/hello"
    r = mtls_client.get(
        f"{lab.service_url('service-a')}/call?target={quote(target, safe='')}",
        bundle=lab.bundle(),
        identity=operator,
        expect_peer=lab.topology.spiffe_id("service-a"),
    )
    assert r.ok and r.status == 200, (r.error, r.detail, r.body)
    assert r.body["peer"] == lab.topology.spiffe_id("service-b")
    assert r.body["response"]["caller"] == lab.topology.spiffe_id("service-a")
    assert r.body["response"]["caller_serial"] == lab.agent_identity("service-a").serial
    assert r.body["peer_serial"] == lab.agent_identity("service-b").serial


@pytest.mark.parametrize("service", ["service-a", "service-b"])
def test_agent_identity_is_a_local_copy_in_the_agent_layout(
    lab: ContainerLab, operator: LabIdentity, service: str
) -> None:
    ident = lab.agent_identity(service)
    gen = ident.generation()
    assert gen.parent == ident.cert_dir and gen.name.startswith("gen-")
    for f in ("key.pem", "cert.pem", "chain.pem", "bundle.pem", "svid.json"):
        assert (gen / f).is_file() and (ident.cert_dir / f).resolve() == gen / f
    assert (gen / "key.pem").stat().st_mode & 0o077 == 0
    assert json.loads((gen / "svid.json").read_text())["spiffe_id"] == lab.topology.spiffe_id(service)
    r = mtls_client.get(lab.service_url(service) + "/hello", bundle=lab.bundle(), identity=operator)
    assert r.status == 200 and r.body["serial"] == ident.serial  # the copy is what the service serves


@pytest.mark.parametrize("service", ["service-a", "service-b"])
def test_services_cannot_reach_the_ra(lab: ContainerLab, service: str) -> None:
    code, out = lab.boxes[service].exec("curl", "-sS", "-m", "3", "-k", "https://ra.zt.lab:8443/v1/status")
    assert code != 0, f"{service} reached the RA: {out}"


def test_ca_volume_is_mounted_only_on_the_ca_side(lab: ContainerLab) -> None:
    holders = {
        name
        for name, box in lab.boxes.items()
        for m in box.container.attrs["Mounts"]
        if m.get("Name") == f"{lab.run}-ca"
    }
    assert holders == {"ca-init", "ra", *(f"register-{s.name}" for s in lab.topology.services)}


def test_new_crl_reaches_service_a_by_signal_across_containers(lab: ContainerLab) -> None:
    """agent-a signals service-a (another container, same PID namespace) after writing a CRL."""
    victim = lab.client_identity("revoked-client")
    since = time.time()
    lab.revoke(serial=victim.serial, reason="key-compromise")
    deadline = time.monotonic() + 20
    entries = 0.0
    while time.monotonic() < deadline and entries < 1:
        entries = metrics_scrape.value(metrics_scrape.scrape(lab.metrics_url("service-a")), "mtls_crl_entries")
        time.sleep(0.3)
    assert entries >= 1
    reloads = [
        json.loads(line)
        for line in lab.boxes["service-a"].logs().decode().splitlines()
        if line.startswith("{") and '"event":"reload"' in line
    ]
    assert any(
        e.get("trigger") == "signal" and e.get("result") == "success"
        for e in reloads
        if e["ts"] >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(since))
    ), reloads[-3:]
    r = mtls_client.get(lab.service_url("service-a") + "/hello", bundle=lab.bundle(), identity=victim)
    assert not r.ok and r.error == "tls_refused"


def test_issued_certificates_come_from_the_ra_container(lab: ContainerLab) -> None:
    pems = lab.issued_certificates()
    assert len(pems) >= 4 and all(p.startswith("-----BEGIN CERTIFICATE-----") for p in pems)


def test_agent_killed_mid_write_leaves_its_service_serving_and_restarts(
    lab: ContainerLab, operator: LabIdentity
) -> None:
    """Chaos plan 6b on containers: the SIGKILL lands while the agent writes a generation (a
    manual rotation asked for a moment after the lab began to watch), the service that shares the
    agent's pod keeps serving, and the agent's container starts again as a new process."""
    rotation = threading.Timer(1.0, lab.rotate, ("service-a",))
    rotation.start()
    try:
        killed = lab.kill_component("agent-service-a")
    finally:
        rotation.cancel()
        rotation.join()
    assert killed["exit_code"] == -signal.SIGKILL and killed["container_exit_code"] == 128 + signal.SIGKILL
    assert killed["writing"] and "svid.json" not in killed["files_at_kill"], killed
    assert lab.boxes["service-a"].exit_state() is None  # the pod holder, not the agent, is the namespace's init
    r = mtls_client.get(lab.service_url("service-a") + "/hello", bundle=lab.bundle(), identity=operator)
    assert r.ok and r.status == 200, (r.error, r.detail)
    with pytest.raises(LabError, match="not running"):
        lab.kill_component("agent-service-a")
    pid = lab.restart_component("agent-service-a")
    assert pid != killed["killed_pid"] and Path(f"/proc/{pid}").exists()

    def started_twice() -> bool:
        return lab.component_log("agent-service-a").count('"event":"start"') >= 2

    process.wait_until("the restarted agent's start", started_twice, timeout=20)


def test_ra_killed_restarts_on_its_store(lab: ContainerLab) -> None:
    """Chaos plan 6a on containers: `docker kill --signal KILL` of the RA, its container started
    again on the same CA volume; the store is whole and the RA issues again."""
    killed = lab.kill_component("ra")
    assert killed["exit_code"] == -signal.SIGKILL and killed["killed_pid"] > 0
    pid = lab.restart_component("ra")
    assert pid != killed["killed_pid"]
    doc = lab.read_store(chaos_store.IN_CONTAINER_READER, ["SELECT count(*) FROM certificates"])
    assert doc["integrity"] == "ok" and doc["rows"][0][0][0] >= 4, doc
    assert lab.client_identity("after-ra-kill").serial


@pytest.mark.parametrize("name", ["crl", "service-a", "agent-nobody"])
def test_kill_component_refuses_what_it_cannot_kill(lab: ContainerLab, name: str) -> None:
    with pytest.raises(LabError, match="only ra, agent-service-a, agent-service-b"):
        lab.kill_component(name)


def test_failed_bring_up_leaves_nothing_behind(runtime: ContainerRuntime, tmp_path: Path) -> None:
    broken = Topology(
        services=(
            ServiceSpec("service-a", "cpp", "build/service-a", "service-z", "signal"),
            ServiceSpec("service-z", "cobol", "none", "service-a", "watch"),
        )
    )
    with pytest.raises(KeyError):
        runtime.start(broken, tmp_path / "work")
    assert leftovers(f"zt.lab.work_dir={tmp_path / 'work'}") == []


def test_wait_fails_fast_when_the_awaited_container_exits(runtime: ContainerRuntime, tmp_path: Path) -> None:
    """The lab's one wait helper watches a container as it does a process: it stops waiting
    when the container has exited, and says how, with its log."""
    lab = runtime.create(Topology(), tmp_path / "work")
    try:
        box = lab._start(lab._box("dies", "agent", ["--no-such-flag"], mounts=[], network=None))
        t0 = time.monotonic()
        with pytest.raises(process.WaitTimeout) as e:
            lab._wait("dies to write its identity", box, lambda: False, timeout=90)
        assert time.monotonic() - t0 < 45
    finally:
        lab.stop()
    msg = str(e.value)
    assert msg.startswith("dies is exited (exit code 2) while waiting for dies to write its identity"), msg
    assert "zt-agent: error: the following arguments are required" in msg  # from the container's log


def test_sweep_removes_a_dead_runs_leftovers_but_not_a_live_ones(runtime: ContainerRuntime) -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()  # reaped: its PID names no process now
    client = runtime_client()
    run = f"zt-sweeptest-{os.getpid()}"
    dead = client.volumes.create(name=f"{run}-dead", labels={LABEL_RUN: run, LABEL_PID: str(finished.pid)})
    live = client.volumes.create(name=f"{run}-live", labels={LABEL_RUN: run, LABEL_PID: str(os.getpid())})
    try:
        sweep_stale(client)
        assert {v.name for v in client.volumes.list(filters={"label": f"{LABEL_RUN}={run}"})} == {live.name}
    finally:
        for v in (dead, live):
            with contextlib.suppress(Exception):
                v.remove(force=True)
