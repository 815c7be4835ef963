"""deploy/mesh-policy.json, the one policy every lab (and compose) runs both services with:
well-formed as the contract's version 2 says (the services refuse to start on a bad file, which
would fail every milestone at once), and it decides what the scenarios rely on. The services'
own parsers and matchers are tested in their suites; this is the file's test, with the
contract's matching rule (exact, or a prefix when the pattern ends in `*`) written out."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from zt.lab.topology import MESH_POLICY

SVC = "spiffe://zt.lab/svc/"
A, B = SVC + "service-a", SVC + "service-b"
# Every identity a scenario or the lab itself calls the services with, and what it does there.
LAB_CLIENTS = {
    "lab-probe": ("/hello",),  # readiness: an mTLS /hello on each service
    "operator": ("/hello", "/call"),
    "load": ("/hello", "/call"),  # Milestone 2's locust
    "bystander": ("/hello",),
    "short-lived": ("/hello",),
    "fleet": ("/hello",),
    "latency": ("/hello",),
    "revoked-client": ("/hello",),
    "m5-reader": ("/hello",),
    "m4-client": ("/hello",),  # Milestone 4's client
    "demo-client": ("/hello",),  # ./demo.sh observe
}


def load() -> dict[str, Any]:
    return dict(json.loads(MESH_POLICY.read_text()))


def matches(pattern: str, value: str) -> bool:
    return value.startswith(pattern[:-1]) if pattern.endswith("*") else value == pattern


def allowed(policy: dict[str, Any], caller: str, callee: str, method: str, path: str) -> bool:
    return any(
        matches(r["caller"], caller)
        and matches(r["callee"], callee)
        and any(m in ("*", method) for m in r["methods"])
        and any(matches(p, path) for p in r["paths"])
        for r in policy["rules"]
    )


def test_the_file_is_a_well_formed_version_2_policy() -> None:
    doc = load()
    assert set(doc) == {"version", "rules"} and doc["version"] == 2
    assert doc["rules"], "an empty policy denies everything"
    for rule in doc["rules"]:
        assert set(rule) == {"caller", "callee", "methods", "paths"}, rule
        assert rule["caller"].startswith("spiffe://zt.lab/") and rule["callee"].startswith("spiffe://zt.lab/")
        for key in ("methods", "paths"):
            assert rule[key] and all(isinstance(v, str) and v for v in rule[key]), rule
        assert all(m == "*" or re.fullmatch(r"[A-Z]+", m) for m in rule["methods"]), rule
        assert all(p == "*" or p.startswith("/") for p in rule["paths"]), rule


@pytest.mark.parametrize("name", sorted(LAB_CLIENTS))
def test_every_lab_client_may_do_what_the_scenarios_do_and_no_more(name: str) -> None:
    policy = load()
    for service in (A, B):
        for path in ("/hello", "/call"):
            assert allowed(policy, SVC + name, service, "GET", path) == (path in LAB_CLIENTS[name]), (name, path)
        assert not allowed(policy, SVC + name, service, "POST", "/hello")


def test_services_call_each_other_and_not_themselves() -> None:
    policy = load()
    assert allowed(policy, A, B, "GET", "/hello") and allowed(policy, B, A, "GET", "/hello")
    assert not allowed(policy, A, A, "GET", "/hello") and not allowed(policy, B, B, "GET", "/hello")
    assert not allowed(policy, A, B, "GET", "/call")  # no chains through the mesh


def test_an_unnamed_identity_is_denied_everywhere() -> None:
    policy = load()
    for caller in (SVC + "m5-intruder", SVC + "service-c", "spiffe://zt.lab/ops/admin"):
        assert not any(allowed(policy, caller, s, "GET", p) for s in (A, B) for p in ("/hello", "/call", "/"))
