"""The agent's metrics page and health check, served over real HTTP from its own registry."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from zt.agent.metrics import AgentMetrics, CrlView, IdentityView, MetricsServer, parse_listen
from zt.clock import FakeClock
from zt.errors import ConfigError
from zt.lab.ports import free_port

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def samples(text: str) -> dict[str, float]:
    """`name{label="v"}` -> value, for every sample on the page."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


@pytest.fixture
def served() -> Iterator[tuple[AgentMetrics, FakeClock, str]]:
    clock = FakeClock(T0)
    metrics = AgentMetrics(clock)
    server = MetricsServer(metrics, f"127.0.0.1:{free_port()}").start()
    try:
        yield metrics, clock, f"http://{server.address}"
    finally:
        server.close()


def test_scrape_before_bootstrap_has_counters_at_zero_and_no_certificate_gauges(
    served: tuple[AgentMetrics, FakeClock, str],
) -> None:
    _, _, url = served
    r = httpx.get(url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    got = samples(r.text)
    assert got["rotation_success_total"] == 0 and got["rotation_failure_total"] == 0
    for result in ("updated", "not_modified", "error", "rejected"):
        assert got[f'crl_fetch_total{{result="{result}"}}'] == 0
    assert got["identity_revoked"] == 0
    assert "cert_age_seconds" not in got  # absent, not a misleading 0
    assert not [name for name in got if name.endswith("_created")]  # only docs/metrics.md's series
    health = httpx.get(url + "/healthz")
    assert health.status_code == 503 and health.json()["status"] == "no_identity"


def test_scrape_has_the_contract_names_computed_at_scrape_time(
    served: tuple[AgentMetrics, FakeClock, str],
) -> None:
    metrics, clock, url = served
    metrics.identity = IdentityView("ab12", T0 - dt.timedelta(seconds=10), T0 + dt.timedelta(seconds=20))
    metrics.crl = CrlView(7, T0 - dt.timedelta(seconds=3))
    metrics.rotation_success.inc()
    metrics.rotation_failure.inc(2)
    metrics.crl_result("updated")
    metrics.crl_result("rejected")
    metrics.revoked = True
    clock.advance(5)
    got = samples(httpx.get(url + "/metrics").text)
    assert got["cert_age_seconds"] == 15
    assert got["cert_expiry_seconds"] == 15
    assert got["cert_not_after_timestamp_seconds"] == (T0 + dt.timedelta(seconds=20)).timestamp()
    assert got["rotation_success_total"] == 1 and got["rotation_failure_total"] == 2
    assert got['crl_fetch_total{result="updated"}'] == 1 and got['crl_fetch_total{result="rejected"}'] == 1
    assert got['crl_fetch_total{result="not_modified"}'] == 0
    assert got["crl_age_seconds"] == 8 and got["crl_number"] == 7
    assert got["identity_revoked"] == 1
    health = httpx.get(url + "/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok", "serial": "ab12", "identity_revoked": True}
    clock.advance(20)  # past notAfter
    assert httpx.get(url + "/healthz").json()["status"] == "expired"
    assert samples(httpx.get(url + "/metrics").text)["cert_expiry_seconds"] == -5


def test_agent_registry_is_its_own_not_the_global_one(served: tuple[AgentMetrics, FakeClock, str]) -> None:
    _, _, url = served
    assert REGISTRY.get_sample_value("rotation_success_total") is None
    assert "python_gc_objects_collected_total" not in httpx.get(url + "/metrics").text


@pytest.mark.parametrize("path, method, status", [("/nope", "GET", 404), ("/metrics", "POST", 405)])
def test_other_paths_and_methods_are_refused_with_json(
    served: tuple[AgentMetrics, FakeClock, str], path: str, method: str, status: int
) -> None:
    _, _, url = served
    r = httpx.request(method, url + path)
    assert r.status_code == status and "error" in r.json()


@pytest.mark.parametrize("text", ["9102", "host:", ":9102", "host:port", "host:70000"])
def test_parse_listen_refuses_malformed_addresses(text: str) -> None:
    with pytest.raises(ConfigError, match="HOST:PORT"):
        parse_listen(text)


def test_parse_listen_takes_ipv6_in_brackets() -> None:
    assert parse_listen("[::1]:9102") == ("::1", 9102)


def test_metrics_server_on_a_taken_port_is_a_config_error(served: tuple[AgentMetrics, FakeClock, str]) -> None:
    metrics, _, url = served
    with pytest.raises(ConfigError, match="cannot listen"):
        MetricsServer(metrics, url.removeprefix("http://"))
