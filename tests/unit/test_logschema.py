"""The log-line schema (zt/log_line.schema.json, docs/logs.md): one good and one bad line per rule.

Each bad line breaks exactly one rule and the test checks that the error names the field that
broke it, so a rule silently dropped from the schema fails here rather than passing vacuously.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from zt.logschema import load_schema, validate_bytes, validate_file, validate_line, validate_text

TS = "2026-12-01T01:02:03.456Z"
SID = "spiffe://zt.lab/svc/service-a"
SID_B = "spiffe://zt.lab/svc/service-b"
T = "2026-12-01T02:02:03Z"

# One good line per seed event (CONTRACT section L), plus a minimal unknown event.
GOOD: dict[str, dict[str, Any]] = {
    "minimal": {"event": "start"},
    "issued_token": {
        "event": "issued",
        "serial": "1f3a",
        "spiffe_id": SID,
        "not_after": T,
        "via": "token",
        "actor": "service-a",
    },
    "issued_renewal": {
        "event": "issued",
        "serial": "2b",
        "spiffe_id": SID,
        "not_after": "2026-12-01T02:02:03.123456Z",
        "via": "renewal",
        "actor": SID,
        "renews": "1f3a",
    },
    "issued_admin": {
        "event": "issued",
        "serial": "0",
        "spiffe_id": SID,
        "not_after": T,
        "via": "admin",
        "actor": "admin",
    },
    "issued_ztca": {
        "component": "ztca",
        "event": "issued",
        "serial": "abc",
        "spiffe_id": SID,
        "not_after": T,
        "via": "admin",
        "actor": "ztca",
    },
    "registered": {"event": "registered", "service": "service-a", "spiffe_id": SID, "actor": "admin"},
    "revoked": {
        "event": "revoked",
        "serials": ["1f3a", "2b"],
        "service": "service-a",
        "reason": "keyCompromise",
        "actor": "admin",
        "crl_number": 7,
    },
    "revoked_nulls": {
        "component": "ztca",
        "event": "revoked",
        "serials": ["1f3a"],
        "service": None,
        "reason": None,
        "actor": "ztca",
        "crl_number": 0,
    },
    "rotation_agent": {
        "component": "zt-agent",
        "event": "rotation",
        "old_serial": "1f3a",
        "new_serial": "2b",
        "service": "service-a",
    },
    "rotation_service_first": {"component": "service-a", "event": "rotation", "old_serial": None, "new_serial": "2b"},
    "handshake_rejected_no_cert": {
        "component": "service-b",
        "event": "handshake_rejected",
        "reason": "no_certificate",
        "peer_addr": "127.0.0.1:50412",
    },
    "handshake_rejected_cert": {
        "component": "service-b",
        "event": "handshake_rejected",
        "reason": "revoked",
        "peer_addr": "[::1]:50412",
        "peer_spiffe_id": SID,
        "peer_serial": "1f3a",
    },
    "handshake_rejected_nulls": {
        "component": "service-a",
        "event": "handshake_rejected",
        "reason": "bad_chain",
        "peer_addr": "10.0.0.2:1",
        "peer_spiffe_id": None,
        "peer_serial": None,
    },
    "policy_denied": {
        "component": "service-b",
        "event": "policy_denied",
        "caller": SID,
        "callee": SID_B,
        "method": "POST",
        "path": "/admin",
    },
    "rate_limited": {
        "event": "rate_limited",
        "limit": "issue_per_identity",
        "key": "service-a",
        "retry_after": 3.5,
        "endpoint": "/v1/issue",
    },
    "locked_out": {
        "event": "locked_out",
        "source": "127.0.0.1",
        "failures": 5,
        "retry_after": 1,
        "credential": "bootstrap_token",
    },
    "typed_fields": {
        "event": "crl_written",
        "crl_number": 12,
        "entries": 0,
        "status": 200,
        "port": 8443,
        "metrics_port": 0,
        "pid": 4242,
        "next_update": T,
        "this_update": "2026-12-01T01:02:03.5Z",
        "not_before": None,
        "token_expires": T,
        "duration_ms": 0,
        "peer": SID,
        "caller": None,
        "serials": [],
        "anything_else": {"nested": [1, "x"]},
    },
}


def line(case: str = "minimal", **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"ts": TS, "level": "info", "component": "zt-ra"}
    doc.update(copy.deepcopy(GOOD[case]))
    for k, v in changes.items():
        if v is _DROP:
            doc.pop(k, None)
        else:
            doc[k] = v
    return doc


_DROP = object()


def test_schema_is_a_valid_2020_12_schema_shipped_with_the_package() -> None:
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("case", sorted(GOOD))
def test_validate_line_accepts_good_lines(case: str) -> None:
    assert validate_line(line(case)) == []


@pytest.mark.parametrize("level", ["debug", "info", "warn", "error"])
def test_validate_line_accepts_every_level(level: str) -> None:
    assert validate_line(line(level=level)) == []


BAD: list[tuple[str, dict[str, Any], str]] = [
    # base keys
    ("minimal", {"ts": _DROP}, "'ts' is a required property"),
    ("minimal", {"level": _DROP}, "'level' is a required property"),
    ("minimal", {"component": _DROP}, "'component' is a required property"),
    ("minimal", {"event": _DROP}, "'event' is a required property"),
    ("minimal", {"ts": "2026-12-01T01:02:03Z"}, "ts:"),
    ("minimal", {"ts": "2026-12-01T01:02:03.456789Z"}, "ts:"),
    ("minimal", {"ts": "2026-12-01T01:02:03.456+00:00"}, "ts:"),
    ("minimal", {"ts": "2026-13-01T01:02:03.456Z"}, "ts:"),
    ("minimal", {"ts": "2026-12-01 01:02:03.456Z"}, "ts:"),
    ("minimal", {"ts": 1764550923.456}, "ts:"),
    ("minimal", {"level": "warning"}, "level:"),
    ("minimal", {"level": "INFO"}, "level:"),
    ("minimal", {"component": ""}, "component:"),
    ("minimal", {"component": "zt ra"}, "component:"),
    ("minimal", {"component": None}, "component:"),
    ("minimal", {"event": "Issued"}, "event:"),
    ("minimal", {"event": "1st"}, "event:"),
    ("minimal", {"event": "crl-written"}, "event:"),
    ("minimal", {"event": ""}, "event:"),
    # serials, wherever they appear
    ("minimal", {"serial": "1F3A"}, "serial:"),
    ("minimal", {"serial": "01f3a"}, "serial:"),
    ("minimal", {"serial": "0x1f3a"}, "serial:"),
    ("minimal", {"serial": "1f:3a"}, "serial:"),
    ("minimal", {"serial": "1f3a\n"}, "serial:"),
    ("minimal", {"serial": ""}, "serial:"),
    ("minimal", {"serial": 7994}, "serial:"),
    ("minimal", {"old_serial": "AB"}, "old_serial:"),
    ("minimal", {"new_serial": "0ab"}, "new_serial:"),
    ("minimal", {"peer_serial": 12}, "peer_serial:"),
    ("minimal", {"renews": "g1"}, "renews:"),
    ("minimal", {"serials": "1f3a"}, "serials:"),
    ("minimal", {"serials": ["1f3a", "AB"]}, "serials/1:"),
    ("minimal", {"serials": [None]}, "serials/0:"),
    # SPIFFE IDs
    ("minimal", {"spiffe_id": "https://zt.lab/svc/a"}, "spiffe_id:"),
    ("minimal", {"spiffe_id": "service-a"}, "spiffe_id:"),
    ("minimal", {"peer_spiffe_id": ""}, "peer_spiffe_id:"),
    ("minimal", {"caller": "spiffe://"}, "caller:"),
    ("minimal", {"callee": 3}, "callee:"),
    ("minimal", {"peer": "spiffe://zt.lab/svc/a b"}, "peer:"),
    # integers
    ("minimal", {"crl_number": "7"}, "crl_number:"),
    ("minimal", {"crl_number": 7.5}, "crl_number:"),
    ("minimal", {"crl_number": -1}, "crl_number:"),
    ("minimal", {"crl_number": True}, "crl_number:"),
    ("minimal", {"entries": "3"}, "entries:"),
    ("minimal", {"status": "200"}, "status:"),
    ("minimal", {"port": 70000}, "port:"),
    ("minimal", {"port": "8443"}, "port:"),
    ("minimal", {"metrics_port": None}, "metrics_port:"),
    ("minimal", {"pid": "4242"}, "pid:"),
    # times
    ("minimal", {"not_after": "2026-12-01T02:02:03+00:00"}, "not_after:"),
    ("minimal", {"not_before": "2026-12-01T02:02:03"}, "not_before:"),
    ("minimal", {"next_update": "2026-12-01 02:02:03Z"}, "next_update:"),
    ("minimal", {"this_update": 1764554523}, "this_update:"),
    ("minimal", {"token_expires": "tomorrow"}, "token_expires:"),
    # numbers >= 0
    ("minimal", {"duration_ms": -0.5}, "duration_ms:"),
    ("minimal", {"duration_ms": "12"}, "duration_ms:"),
    ("minimal", {"retry_after": -1}, "retry_after:"),
    ("minimal", {"retry_after": None}, "retry_after:"),
    # peer_addr
    ("minimal", {"peer_addr": "127.0.0.1"}, "peer_addr:"),
    ("minimal", {"peer_addr": 50412}, "peer_addr:"),
    # issued
    ("issued_token", {"serial": _DROP}, "'serial' is a required property"),
    ("issued_token", {"spiffe_id": _DROP}, "'spiffe_id' is a required property"),
    ("issued_token", {"not_after": _DROP}, "'not_after' is a required property"),
    ("issued_token", {"via": _DROP}, "'via' is a required property"),
    ("issued_token", {"actor": _DROP}, "'actor' is a required property"),
    ("issued_token", {"serial": None}, "serial:"),
    ("issued_token", {"spiffe_id": None}, "spiffe_id:"),
    ("issued_token", {"not_after": None}, "not_after:"),
    ("issued_token", {"via": "bootstrap"}, "via:"),
    ("issued_token", {"actor": ""}, "actor:"),
    ("issued_renewal", {"renews": _DROP}, "'renews' is a required property"),
    ("issued_renewal", {"renews": None}, "renews:"),
    ("issued_renewal", {"actor": "service-a"}, "actor:"),
    ("issued_admin", {"actor": "bob"}, "actor:"),
    ("issued_ztca", {"actor": "admin"}, "actor:"),
    # registered
    ("registered", {"service": _DROP}, "'service' is a required property"),
    ("registered", {"spiffe_id": _DROP}, "'spiffe_id' is a required property"),
    ("registered", {"actor": _DROP}, "'actor' is a required property"),
    ("registered", {"spiffe_id": None}, "spiffe_id:"),
    ("registered", {"service": None}, "service:"),
    # revoked
    ("revoked", {"serials": _DROP}, "'serials' is a required property"),
    ("revoked", {"service": _DROP}, "'service' is a required property"),
    ("revoked", {"reason": _DROP}, "'reason' is a required property"),
    ("revoked", {"actor": _DROP}, "'actor' is a required property"),
    ("revoked", {"crl_number": _DROP}, "'crl_number' is a required property"),
    ("revoked", {"actor": "root"}, "actor:"),
    ("revoked", {"service": 5}, "service:"),
    ("revoked", {"reason": 1}, "reason:"),
    ("revoked", {"crl_number": "7"}, "crl_number:"),
    ("revoked_nulls", {"actor": "admin"}, "actor:"),
    # rotation
    ("rotation_agent", {"old_serial": _DROP}, "'old_serial' is a required property"),
    ("rotation_agent", {"new_serial": _DROP}, "'new_serial' is a required property"),
    ("rotation_agent", {"new_serial": None}, "new_serial:"),
    ("rotation_agent", {"service": _DROP}, "'service' is a required property"),
    ("rotation_agent", {"service": ""}, "service:"),
    # handshake_rejected
    ("handshake_rejected_cert", {"reason": _DROP}, "'reason' is a required property"),
    ("handshake_rejected_cert", {"peer_addr": _DROP}, "'peer_addr' is a required property"),
    ("handshake_rejected_cert", {"reason": ""}, "reason:"),
    ("handshake_rejected_cert", {"peer_serial": "1F3A"}, "peer_serial:"),
    # policy_denied
    ("policy_denied", {"caller": _DROP}, "'caller' is a required property"),
    ("policy_denied", {"callee": _DROP}, "'callee' is a required property"),
    ("policy_denied", {"method": _DROP}, "'method' is a required property"),
    ("policy_denied", {"path": _DROP}, "'path' is a required property"),
    ("policy_denied", {"method": ""}, "method:"),
    ("policy_denied", {"path": None}, "path:"),
    # rate_limited
    ("rate_limited", {"limit": _DROP}, "'limit' is a required property"),
    ("rate_limited", {"key": _DROP}, "'key' is a required property"),
    ("rate_limited", {"retry_after": _DROP}, "'retry_after' is a required property"),
    ("rate_limited", {"endpoint": _DROP}, "'endpoint' is a required property"),
    ("rate_limited", {"limit": "per_minute"}, "limit:"),
    ("rate_limited", {"key": ""}, "key:"),
    ("rate_limited", {"endpoint": 1}, "endpoint:"),
    # locked_out
    ("locked_out", {"source": _DROP}, "'source' is a required property"),
    ("locked_out", {"failures": _DROP}, "'failures' is a required property"),
    ("locked_out", {"retry_after": _DROP}, "'retry_after' is a required property"),
    ("locked_out", {"credential": _DROP}, "'credential' is a required property"),
    ("locked_out", {"failures": 0}, "failures:"),
    ("locked_out", {"failures": "5"}, "failures:"),
    ("locked_out", {"credential": "password"}, "credential:"),
    ("locked_out", {"source": ""}, "source:"),
]


@pytest.mark.parametrize(
    "case, changes, expected",
    BAD,
    ids=[f"{c}-{'-'.join(k for k in ch)}-{i}" for i, (c, ch, _) in enumerate(BAD)],
)
def test_validate_line_rejects_bad_lines(case: str, changes: dict[str, Any], expected: str) -> None:
    errors = validate_line(line(case, **changes))
    assert any(expected in e for e in errors), errors


@pytest.mark.parametrize("doc", [[], "x", 3, None])
def test_validate_line_rejects_a_line_that_is_not_an_object(doc: Any) -> None:
    assert any("is not of type 'object'" in e for e in validate_line(doc))


def test_validate_line_checks_types_of_unknown_events_too() -> None:
    doc = line(event="some_new_event", serial="AB", crl_number="3")
    errors = validate_line(doc)
    assert any(e.startswith("serial:") for e in errors), errors
    assert any(e.startswith("crl_number:") for e in errors), errors


def test_validate_line_requires_the_agent_service_only_for_the_agent() -> None:
    doc = line("rotation_agent", component="service-b", service=_DROP)
    assert validate_line(doc) == []


def test_validate_text_names_each_bad_line_by_number() -> None:
    good = json.dumps({"ts": TS, "level": "info", "component": "zt-ra", "event": "start"})
    loud = json.dumps({"ts": TS, "level": "loud", "component": "x", "event": "e"})
    text = "\n".join([good, "not json", good, "", loud]) + "\n"
    problems = validate_text(text)
    assert [n for n, _ in problems] == [2, 4, 5]
    assert problems[0][1].startswith("not JSON")
    assert problems[1][1].startswith("not JSON")
    assert problems[2][1].startswith("level:")


def test_validate_file_good_file_has_no_problems(tmp_path: Path) -> None:
    p = tmp_path / "good.log"
    p.write_text("".join(f'{{"ts":"{TS}","level":"info","component":"zt-ra","event":"e{i}"}}\n' for i in range(3)))
    assert validate_file(p) == []
    assert validate_file(str(p)) == []


def test_validate_file_empty_file_has_no_lines(tmp_path: Path) -> None:
    p = tmp_path / "empty.log"
    p.write_bytes(b"")
    assert validate_file(p) == []


def test_validate_file_rejects_non_utf8_and_plain_text(tmp_path: Path) -> None:
    p = tmp_path / "mixed.log"
    good = f'{{"ts":"{TS}","level":"info","component":"zt-ra","event":"start"}}'.encode()
    p.write_bytes(good + b"\n\xff\xfe\n" + b"Traceback (most recent call last):\n" + good)
    problems = validate_file(p)
    assert [n for n, _ in problems] == [2, 3]
    assert all(msg.startswith("not JSON") for _, msg in problems)


def test_validate_bytes_final_line_without_newline_is_checked() -> None:
    assert [n for n, _ in validate_bytes(b'{"event":"x"}')] == [1, 1, 1]
