"""stop_component/start_component: only the CRL publisher is a fault the lab knows how to heal;
anything else, or a lab that never started it, is a clear LabError (no engine, no process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zt.lab.container_runtime import ContainerRuntime
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


def test_each_service_can_have_its_own_stale_crl_mode() -> None:
    a, b = DEFAULT_SERVICES
    topology = Topology(crl_stale="refuse", services=(a, ServiceSpec(**{**b.__dict__, "crl_stale": "warn"})))
    assert topology.crl_stale_mode("service-a") == "refuse"
    assert topology.crl_stale_mode("service-b") == "warn"
    assert Topology(crl_stale="warn").crl_stale_mode("service-a") == "warn"
