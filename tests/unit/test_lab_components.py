"""stop_component/start_component: only the CRL publisher is a fault the lab knows how to heal;
kill_component/restart_component: only the RA and the agents. Anything else, or a lab that
never started it, is a clear LabError (no engine, no process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zt.lab.container_runtime import ContainerRuntime, ra_alias, ra_name
from zt.lab.host_identities import LabError
from zt.lab.process_runtime import ProcessRuntime
from zt.lab.topology import DEFAULT_SERVICES, ServiceSpec, Topology


@pytest.mark.parametrize("runtime", [ProcessRuntime(), ContainerRuntime()], ids=["process", "docker"])
@pytest.mark.parametrize("action", ["stop_component", "start_component"])
@pytest.mark.parametrize("name", ["ra", "service-a", "crl"])
def test_components_other_than_a_running_publisher_are_refused(
    tmp_path: Path, runtime: ProcessRuntime | ContainerRuntime, action: str, name: str
) -> None:
    lab = runtime.create(Topology(), tmp_path / "lab")
    with pytest.raises(LabError, match="crl" if name == "crl" else name):
        getattr(lab, action)(name)


@pytest.mark.parametrize("runtime", [ProcessRuntime(), ContainerRuntime()], ids=["process", "docker"])
@pytest.mark.parametrize("action", ["kill_component", "restart_component"])
@pytest.mark.parametrize("name", ["crl", "service-a", "agent-nobody", "ra-2"])
def test_only_the_ra_and_the_agents_can_be_killed(
    tmp_path: Path, runtime: ProcessRuntime | ContainerRuntime, action: str, name: str
) -> None:
    lab = runtime.create(Topology(), tmp_path / "lab")
    with pytest.raises(LabError, match=name):
        getattr(lab, action)(name)


@pytest.mark.parametrize("action", ["kill_component", "restart_component"])
def test_a_container_lab_not_up_has_nothing_to_kill(tmp_path: Path, action: str) -> None:
    lab = ContainerRuntime().create(Topology(), tmp_path / "lab")
    with pytest.raises(LabError, match="the lab is not up, it has no agent-service-a"):
        getattr(lab, action)("agent-service-a")


def test_a_container_lab_refuses_a_store_it_does_not_know(tmp_path: Path) -> None:
    lab = ContainerRuntime().create(Topology(store="mysql"), tmp_path / "lab")
    with pytest.raises(LabError, match="store 'mysql': one of sqlite, postgres"):
        lab.up()


def test_replicas_are_named_and_addressed_one_way() -> None:
    assert [ra_name(n) for n in (1, 2)] == ["ra", "ra-2"]
    assert [ra_alias(n) for n in (1, 2)] == ["ra.zt.lab", "ra-2.zt.lab"]
    assert Topology(store="postgres").ra_replicas == 2 and Topology().ra_replicas == 1


def test_each_service_can_have_its_own_stale_crl_mode() -> None:
    a, b = DEFAULT_SERVICES
    topology = Topology(crl_stale="refuse", services=(a, ServiceSpec(**{**b.__dict__, "crl_stale": "warn"})))
    assert topology.crl_stale_mode("service-a") == "refuse"
    assert topology.crl_stale_mode("service-b") == "warn"
    assert Topology(crl_stale="warn").crl_stale_mode("service-a") == "warn"
