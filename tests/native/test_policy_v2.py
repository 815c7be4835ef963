"""Policy version 2 (CONTRACT P, docs/contracts.md section 4) enforced by both real services
from ONE mesh file: rules name caller, callee (the serving service's own SPIFFE ID), methods
and paths. Every denial is checked as the contract words it (403, the JSON body naming
caller, callee, method and path, the `policy_denied` line, the counter) next to its twin that
is allowed; a rule's callee makes the same caller and path allowed on one service and denied
on the other; a bad file refuses to start, and on reload keeps the old policy.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import make_ca
from tests.native.pair import KINDS, TD, Pair, start_pair
from zt.lab import metrics_scrape, mtls_client, process
from zt.lab.services import RunningService, start_service

MESH: dict[str, Any] = {
    "version": 2,
    "rules": [
        # The services call each other's /hello only.
        {"caller": TD + "service-a", "callee": TD + "service-b", "methods": ["GET"], "paths": ["/hello"]},
        {"caller": TD + "service-b", "callee": TD + "service-a", "methods": ["GET"], "paths": ["/hello"]},
        # client may use both services fully; reader only /hello; b-only only service-b's /hello.
        {"caller": TD + "client", "callee": "*", "methods": ["GET"], "paths": ["/hello", "/call"]},
        {"caller": TD + "reader", "callee": TD + "service-*", "methods": ["GET"], "paths": ["/hello"]},
        {"caller": TD + "b-only", "callee": TD + "service-b", "methods": ["GET"], "paths": ["/hello"]},
    ],
}
CALLERS = ("client", "reader", "b-only", "stranger")


def write_policy(path: Path, doc: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    os.replace(tmp, path)  # a new inode, as an editor or config management writes it


def start_mesh(tmp: Path, policy: Path) -> Pair:
    return start_pair(tmp, CALLERS, extra=("--policy", str(policy)))


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("policy2")
    policy = tmp / "mesh-policy.json"
    write_policy(policy, MESH)
    p = start_mesh(tmp, policy)
    try:
        yield p
    finally:
        p.stop()


def request(p: Pair, service: str, method: str, path: str, who: str) -> tuple[int, dict[str, Any]]:
    """One request with any method (mtls_client only does GET), on a fresh mTLS connection."""
    svc = p.services[service]
    ctx: ssl.SSLContext = mtls_client.context(p.ca.paths.bundle, p.ids[who])
    conn = http.client.HTTPSConnection("127.0.0.1", svc.tls_port, context=ctx, timeout=10)
    try:
        conn.request(method, path, headers={"Host": f"127.0.0.1:{svc.tls_port}", "Content-Length": "0"})
        r = conn.getresponse()
        raw = r.read()
        return r.status, (json.loads(raw) if raw else {})
    finally:
        conn.close()


def denials(svc: RunningService) -> float:
    return metrics_scrape.counter(svc.metrics_url, "mtls_policy_denials_total")


def logged_denial(svc: RunningService, caller: str, method: str, path: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def seen() -> bool:
        lines = [json.loads(x) for x in svc.proc.log_text().splitlines() if x.startswith("{")]
        found[:] = [
            x
            for x in lines
            if x.get("event") == "policy_denied"
            and x.get("caller") == caller
            and x.get("method") == method
            and x.get("path") == path
        ]
        return bool(found)

    process.wait_until(f"{svc.name} to log policy_denied for {caller} {method} {path}", seen, timeout=5)
    return found[-1]


def assert_denied(p: Pair, service: str, who: str, path: str, method: str = "GET") -> None:
    """403 with the contract's body, logged and counted; a TLS connection, not a TLS failure."""
    svc = p.services[service]
    before = denials(svc)
    status, body = request(p, service, method, path, who)
    caller, callee, bare = TD + who, TD + service, path.split("?")[0]
    assert status == 403, (status, body)
    assert body["error"] == "forbidden", body
    assert (body["caller"], body["callee"], body["method"], body["path"]) == (caller, callee, method, bare), body
    assert body["reason"] == f"{caller} may not call {method} {bare} on {callee}", body
    line = logged_denial(svc, caller, method, bare)
    assert line["callee"] == callee, line
    assert metrics_scrape.counter_delta(svc.metrics_url, "mtls_policy_denials_total", before) == 1


@pytest.mark.parametrize("service", KINDS)
def test_unlisted_caller_denied_listed_caller_allowed_same_path(mesh: Pair, service: str) -> None:
    assert_denied(mesh, service, "stranger", "/hello")
    assert request(mesh, service, "GET", "/hello", "client")[0] == 200


@pytest.mark.parametrize("service", KINDS)
def test_caller_allowed_one_path_is_denied_another(mesh: Pair, service: str) -> None:
    assert request(mesh, service, "GET", "/hello", "reader")[0] == 200
    assert_denied(mesh, service, "reader", "/call?target=https%3A%2F%2F127.0.0.1%3A1%2Fhello")
    # An unknown path is denied by policy too (policy before routing: 403, not 404).
    assert_denied(mesh, service, "reader", "/admin")


@pytest.mark.parametrize("service", KINDS)
def test_method_not_listed_is_denied_before_405(mesh: Pair, service: str) -> None:
    assert_denied(mesh, service, "reader", "/hello", method="POST")
    status, body = request(mesh, service, "POST", "/hello", "client")  # client: GET only too
    assert status == 403 and body["method"] == "POST", body


def test_callee_decides_same_caller_and_path(mesh: Pair) -> None:
    """The point of version 2: one file, b-only may call service-b's /hello but not service-a's."""
    assert request(mesh, "service-b", "GET", "/hello", "b-only")[0] == 200
    assert_denied(mesh, "service-a", "b-only", "/hello")


@pytest.mark.parametrize("caller, callee", [("service-a", "service-b"), ("service-b", "service-a")])
def test_services_call_each_other_under_the_mesh_policy(mesh: Pair, caller: str, callee: str) -> None:
    target = quote(mesh.services[callee].url + "/hello", safe="")
    status, body = request(mesh, caller, "GET", f"/call?target={target}", "client")
    assert status == 200 and body["status"] == 200, body
    assert body["response"]["caller"] == TD + caller
    # The callee's rule for the caller names /hello only: /call on it is denied, upstream.
    target = quote(mesh.services[callee].url + "/call", safe="")
    status, body = request(mesh, caller, "GET", f"/call?target={target}", "client")
    assert status == 200 and body["status"] == 403, body
    assert body["response"]["caller"] == TD + caller and body["response"]["callee"] == TD + callee


def test_version_1_file_keeps_its_meaning(tmp_path: Path) -> None:
    policy = tmp_path / "v1.json"
    write_policy(policy, {"version": 1, "rules": [{"caller": TD + "reader", "allow": ["/hello"]}]})
    p = start_mesh(tmp_path, policy)
    try:
        for service in KINDS:
            assert request(p, service, "GET", "/hello", "reader")[0] == 200
            assert_denied(p, service, "reader", "/call")
            assert_denied(p, service, "client", "/hello")
    finally:
        p.stop()


def reloads(svc: RunningService, result: str) -> float:
    return metrics_scrape.counter(svc.metrics_url, "mtls_reloads_total", result=result)


def allowed(p: Pair, service: str, who: str) -> Callable[[], bool]:
    return lambda: request(p, service, "GET", "/hello", who)[0] == 200


def grew(svc: RunningService, failures_before: float) -> Callable[[], bool]:
    return lambda: reloads(svc, "failure") > failures_before


def test_policy_reload_flips_decision_and_bad_file_keeps_old(tmp_path: Path) -> None:
    policy = tmp_path / "mesh-policy.json"
    write_policy(policy, MESH)
    p = start_mesh(tmp_path, policy)
    try:
        for service in KINDS:
            assert_denied(p, service, "stranger", "/hello")
        extra_rule = {"caller": TD + "stranger", "callee": "*", "methods": ["*"], "paths": ["/hello"]}
        opened = dict(MESH, rules=[*MESH["rules"], extra_rule])
        write_policy(policy, opened)
        for svc in p.services.values():
            svc.proc.signal(signal.SIGHUP)
        for service in KINDS:
            process.wait_until(f"{service} to apply the new policy", allowed(p, service, "stranger"), timeout=15)
        failures = {k: reloads(s, "failure") for k, s in p.services.items()}
        bad = dict(MESH, rules=[{"caller": TD + "stranger", "callee": "*", "methods": ["get"], "paths": ["/hello"]}])
        write_policy(policy, bad)  # lower-case method: a bad file
        for svc in p.services.values():
            svc.proc.signal(signal.SIGHUP)
        for service, svc in p.services.items():
            process.wait_until(f"{service} to count the failed reload", grew(svc, failures[service]), timeout=15)
            assert request(p, service, "GET", "/hello", "stranger")[0] == 200  # the old policy stays
            assert_denied(p, service, "reader", "/call")
            assert svc.proc.alive()
    finally:
        p.stop()


@pytest.mark.parametrize("service", KINDS)
@pytest.mark.parametrize(
    "text",
    [
        '{"version": 2, "rules": [{"caller": "*", "allow": ["/hello"]}]}',
        '{"version": 2, "rules": [{"caller": "*", "callee": "*", "methods": [], "paths": ["/hello"]}]}',
        '{"version": 3, "rules": []}',
    ],
    ids=["v1-rule-in-v2", "empty-methods", "version-3"],
)
def test_bad_policy_file_refuses_to_start(service: str, text: str, tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    p = Pair(ca, {}, {}, tmp_path)
    me = p.identity(service)
    policy = tmp_path / "bad.json"
    write_policy(policy, text)
    svc = start_service(service, service, me.cert_dir, tmp_path, expect_peer=TD + "x", extra=("--policy", str(policy)))
    try:
        process.wait_until(f"{service} to exit", lambda: not svc.proc.alive(), timeout=60)
        assert svc.proc.popen.returncode == 1, svc.proc.log_tail()
        assert "policy" in svc.proc.log_text(), svc.proc.log_tail()
    finally:
        svc.proc.stop()
