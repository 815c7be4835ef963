"""The container runtime on `--store postgres`: PostgreSQL in the zt-postgres container, two RA
replicas on it, and the store's network closed to everything but the CA side (docs/scaling.md).

One lab for the module. The replica-kill run itself (`zt-lab run --milestone replicas --store
postgres --runtime docker`) runs in `make test`'s container lab step; these tests assert what is
the container runtime's own: the server runs from our image as its own user, only the RA
replicas and the ztca one-shots reach it, a token is spent once across the two replicas, and
what one replica issues the other's store holds.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

from tests.containers.conftest import TAG, require
from zt.lab import ra_sources
from zt.lab.container_runtime import PG_ALIAS, PG_PORT, ContainerLab, ContainerRuntime
from zt.lab.host_identities import LabError
from zt.lab.topology import Topology

POSTGRES_IMAGE = f"zt-postgres:{TAG}"
# Connects to the store's address from inside a container: "refused" names what stopped it.
PROBE = (
    "import socket, sys\n"
    "try:\n"
    f"    socket.create_connection(('{PG_ALIAS}', {PG_PORT}), 3).close(); print('connected')\n"
    "except OSError as e:\n"
    "    print('refused', type(e).__name__)\n"
)


@pytest.fixture(scope="module")
def lab(images: list[str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerLab]:
    require(importlib.util.find_spec("testcontainers") is not None, "testcontainers is not installed in this venv")
    running = ContainerRuntime().start(Topology(store="postgres"), tmp_path_factory.mktemp("container-pg"))
    try:
        yield running
    finally:
        running.collect_logs(running.work_dir / "collected")
        running.stop()


def test_postgres_runs_from_our_image_not_as_root(lab: ContainerLab) -> None:
    box = lab.boxes["postgres"]
    assert box.container.attrs["Config"]["Image"] == POSTGRES_IMAGE
    code, user = box.exec("id", "-u")
    assert (code, user.strip()) == (0, "10001")
    assert box.container.attrs["HostConfig"]["ReadonlyRootfs"] is True
    published = {p: b for p, b in (box.container.attrs["NetworkSettings"]["Ports"] or {}).items() if b}
    assert published == {}, "the store must publish no port"


def test_only_the_ca_side_is_on_the_store_network(lab: ContainerLab) -> None:
    store = f"{lab.run}-store"
    on_store = {n for n, b in lab.boxes.items() if store in b.container.attrs["NetworkSettings"]["Networks"]}
    assert on_store == {"postgres", "ca-init", "ra", "ra-2", *(f"register-{s.name}" for s in lab.topology.services)}


@pytest.mark.parametrize("box", ["agent-service-a", "agent-service-b"])
def test_agents_cannot_reach_the_store(lab: ContainerLab, box: str) -> None:
    code, out = lab.boxes[box].exec("python3", "-c", PROBE)
    assert code == 0 and out.startswith("refused"), out
    code, out = lab.boxes["ra"].exec("python3", "-c", PROBE)
    assert out.startswith("connected"), out  # the probe can succeed: the RA reaches it


def test_agents_are_given_both_replicas(lab: ContainerLab) -> None:
    args = lab.boxes["agent-service-a"].container.attrs["Args"]
    assert [args[i + 1] for i, a in enumerate(args) if a == "--ra"] == [
        "https://ra.zt.lab:8443",
        "https://ra-2.zt.lab:8443",
    ]


def test_a_token_is_spent_once_across_replicas_and_both_see_the_certificate(lab: ContainerLab) -> None:
    token = str(lab.ztca("register", "replica-client")["token"])
    spiffe_id = lab.topology.spiffe_id("replica-client")
    first = ra_sources.issue(lab._ra_url("ra-2"), lab.bundle(), token, spiffe_id, source="host")
    assert first.status == 200, first
    again = ra_sources.issue(lab.ra_url(), lab.bundle(), token, spiffe_id, source="host")
    assert (again.status, again.error) == (401, "used_token"), again
    listed = lab.ztca("list")["certificates"]  # ztca in replica 1's container, on the shared store
    assert [c["spiffe_id"] for c in listed].count(spiffe_id) == 1, listed[-3:]


def test_replica_2_cannot_be_killed_by_name(lab: ContainerLab) -> None:
    """The kill plans name replica 1 ("ra"); any other name is refused, not guessed."""
    with pytest.raises(LabError, match="only ra"):
        lab.kill_component("ra-2")
