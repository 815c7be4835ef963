"""compose.yaml: valid for the compose tool at hand, and the isolation design holds in the file.

What is checked here is the resolved model (`compose config`), not the text: anchors merged,
defaults applied, as the tool will run it. The live behaviour is in test_demo.py.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

SERVICES = ["ca-init", "ra", "crl-publisher", "agent-a", "service-a", "agent-b", "service-b"]
LONG_RUNNING = [s for s in SERVICES if s != "ca-init"]


def service(model: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(model["services"][name])


def mounts(svc: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(volume, target, read_only) for both tools' spellings: v1 strings, v2 objects."""
    out = []
    for v in svc.get("volumes", []):
        if isinstance(v, str):
            parts = v.split(":")
            out.append((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
        else:
            out.append((str(v.get("source")), str(v["target"]), bool(v.get("read_only", False))))
    return out


def networks(svc: dict[str, Any]) -> set[str]:
    n = svc.get("networks", {})
    return set(n) if isinstance(n, (dict, list)) else set()


def test_compose_file_validates(compose: list[str]) -> None:
    r = subprocess.run([*compose, "config", "-q"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_compose_declares_every_component(compose_model: dict[str, Any]) -> None:
    assert sorted(compose_model["services"]) == sorted(SERVICES)


def test_ca_volume_is_mounted_only_by_ca_init_and_ra(compose_model: dict[str, Any]) -> None:
    holders = {name for name in SERVICES for vol, _, _ in mounts(service(compose_model, name)) if vol == "ca"}
    assert holders == {"ca-init", "ra"}


def test_crl_publisher_reads_only_the_crl_volume(compose_model: dict[str, Any]) -> None:
    assert [(vol, ro) for vol, _, ro in mounts(service(compose_model, "crl-publisher"))] == [("crl", True)]


@pytest.mark.parametrize("svc", ["service-a", "service-b"])
def test_services_share_no_network_with_the_ra(compose_model: dict[str, Any], svc: str) -> None:
    assert networks(service(compose_model, svc)).isdisjoint(networks(service(compose_model, "ra")))
    assert networks(service(compose_model, svc)).isdisjoint(networks(service(compose_model, "crl-publisher")))


@pytest.mark.parametrize("svc", ["service-a", "service-b"])
def test_services_mount_their_certificates_read_only(compose_model: dict[str, Any], svc: str) -> None:
    certs = [ro for _, target, ro in mounts(service(compose_model, svc)) if target == "/var/lib/zt/certs"]
    assert certs == [True]


def test_networks_are_internal(compose_model: dict[str, Any]) -> None:
    for name, net in compose_model["networks"].items():
        assert net.get("internal") is True, f"network {name} routes outside"


def test_ca_init_has_no_network(compose_model: dict[str, Any]) -> None:
    assert service(compose_model, "ca-init").get("network_mode") == "none"


@pytest.mark.parametrize("svc", LONG_RUNNING)
def test_init_order_is_expressed_as_health(compose_model: dict[str, Any], svc: str) -> None:
    s = service(compose_model, svc)
    assert "healthcheck" in s and s["healthcheck"].get("test"), f"{svc} has no health check"
    conditions = {dep: spec.get("condition") for dep, spec in dict(s.get("depends_on", {})).items()}
    assert conditions, f"{svc} depends on nothing"
    assert set(conditions.values()) <= {"service_healthy", "service_completed_successfully"}, conditions


def test_service_a_shares_its_agents_pid_namespace(compose_model: dict[str, Any]) -> None:
    assert service(compose_model, "service-a").get("pid") == "service:agent-a"


@pytest.mark.parametrize("svc", SERVICES)
def test_every_container_is_hardened(compose_model: dict[str, Any], svc: str) -> None:
    s = service(compose_model, svc)
    assert s.get("read_only") is True
    assert s.get("cap_drop") == ["ALL"]
    assert "no-new-privileges:true" in s.get("security_opt", [])
    assert "user" not in s or s["user"] not in ("0", "root"), "runs as root"


@pytest.mark.parametrize("svc", ["agent-a", "agent-b"])
def test_agents_pin_the_bundle_from_the_trust_volume(compose_model: dict[str, Any], svc: str) -> None:
    """CONTRACT B: every agent runs with --bundle-sha256, here the checksum ca-init published."""
    s = service(compose_model, svc)
    script = " ".join(s.get("entrypoint") or [])
    assert "zt-agent --bundle-sha256" in script, script
    assert "/var/lib/zt/trust/bundle.pem.sha256" in script, script
    trust = [(target, ro) for vol, target, ro in mounts(s) if vol == "trust"]
    assert trust == [("/var/lib/zt/trust", True)]
    assert "--bundle" in s["command"] and "/var/lib/zt/trust/bundle.pem" in s["command"]


@pytest.mark.parametrize("svc", ["service-a", "service-b"])
def test_services_enforce_the_mesh_policy(compose_model: dict[str, Any], svc: str) -> None:
    """CONTRACT P: both services run with --policy on deploy/mesh-policy.json, mounted read-only."""
    import json
    from pathlib import Path

    s = service(compose_model, svc)
    cmd = list(s["command"])
    policy = cmd[cmd.index("--policy") + 1]
    mount = [(vol, target, ro) for vol, target, ro in mounts(s) if policy.startswith(target.rstrip("/") + "/")]
    assert len(mount) == 1 and mount[0][2], mount
    source = Path(mount[0][0]) / Path(policy).relative_to(mount[0][1])
    assert source == (Path(__file__).resolve().parents[2] / "deploy" / "mesh-policy.json")
    doc = json.loads(source.read_text())
    assert doc["version"] == 2 and doc["rules"]
