"""Milestone 4's checkers on hand-made histories, and the pure parts they stand on (the
Prometheus configuration, the secret scan, the log event search): each predicate passes the
evidence it must and names what is wrong with the evidence it must not pass."""

from __future__ import annotations

import json
import tarfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

from zt.lab import checkers, checks_m4, log_evidence, milestones, prometheus_config, secrets_scan
from zt.lab.history import History, Operation, Outcome
from zt.lab.topology import Topology

OLD, NEW = "0a1b", "ff02"


def op(criterion: str, outcome: Outcome = "ok", target: str = "service-a", **details: Any) -> Operation:
    return Operation(criterion, "test", "check", target, outcome, time.time(), time.time(), details)


# -- m4.metrics ------------------------------------------------------------------------------------


def handshakes(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "kind": "handshakes",
        "before": {"success": 1.0, "failure": 0.0},
        "after": {"success": 4.0, "failure": 2.0},
        "made_ok": 3,
        "made_refused": 2,
    }
    return d | over


def expiry(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "kind": "expiry",
        "value": 3590.0,
        "scraped_at": 1_000_000.0,
        "not_after": 1_003_590.0,
        "served_serial": NEW,
        "agent_serial": "00" + NEW.upper(),
    }
    return d | over


@pytest.mark.parametrize(
    "details, why",
    [
        (handshakes(), None),
        (handshakes(after={"success": 5.0, "failure": 2.0}), "success rose by 4, the scenario made 3"),
        (handshakes(after={"success": 4.0, "failure": 1.0}), "failure rose by 1, the scenario made 2"),
        (expiry(), None),
        (expiry(value=1_003_590.0), "the certificate expires 3590 s after that scrape"),  # the old meaning
        (expiry(value=-5.0), "not in the future"),
        (expiry(served_serial=OLD), f"saw serial {OLD} served"),
        ({"kind": "rotations", "metric": "m", "before": 0.0, "after": 1.0, "rotations": 1}, None),
        ({"kind": "rotations", "metric": "m", "before": 0.0, "after": 0.0, "rotations": 1}, "rose by 0"),
        ({"kind": "other"}, "unknown kind"),
    ],
)
def test_prometheus_saw_judges_each_kind(details: dict[str, Any], why: str | None) -> None:
    got = checks_m4.prometheus_saw(op("m4.metrics", **details))
    assert got == why if why is None else why in str(got)


def test_metrics_whole_wants_every_kind_for_every_stack() -> None:
    ops = [op("m4.metrics", target=s, **handshakes()) for s in checks_m4.STACKS]
    missing = checks_m4.metrics_whole(ops)
    assert "no expiry evidence for service-a" in missing
    assert "no rotations evidence for agent-service-b" in missing
    assert not any("handshakes" in m for m in missing)


# -- m4.events -------------------------------------------------------------------------------------


def rotation_seen(**line: Any) -> dict[str, Any]:
    return {
        "kind": "rotation",
        "log": "agent-service-a",
        "event": "rotation",
        "expected": {"old_serial": OLD, "new_serial": NEW},
        "seen": [{"event": "rotation", **line}],
    }


@pytest.mark.parametrize(
    "line, ok",
    [
        ({"old_serial": OLD, "new_serial": NEW}, True),
        ({"old_serial": "000A1B", "new_serial": "FF02"}, True),  # format is the schema's business
        ({"old_serial": OLD, "new_serial": OLD}, False),
        ({"old_serial": OLD}, False),
    ],
)
def test_event_logged_wants_the_serials(line: dict[str, Any], ok: bool) -> None:
    got = checks_m4.event_logged(op("m4.events", **rotation_seen(**line)))
    assert (got is None) == ok, got


def test_find_compares_times_as_instants_and_serial_lists_as_sets() -> None:
    docs: list[dict[str, Any]] = [
        {"event": "issued", "not_after": "2030-01-01T00:00:00.000Z"},
        {"event": "revoked", "serials": ["a", "B"]},
    ]
    assert log_evidence.find(docs, "issued", not_after="2030-01-01T00:00:00Z")
    assert not log_evidence.find(docs, "issued", not_after="2030-01-01T00:00:01Z")
    assert log_evidence.find(docs, "revoked", serials=["b"])
    assert not log_evidence.find(docs, "revoked", serials=["c"])


def test_events_whole_names_what_is_missing() -> None:
    ops = [op("m4.events", target="service-a", **rotation_seen(old_serial=OLD, new_serial=NEW))]
    missing = checks_m4.events_whole(ops)
    assert "no evidence of a issuance event" in missing
    assert "no rotation line from service-a's service" in missing
    assert "no rejected handshake checked on service-b" in missing


# -- m4.log_schema, m4.audit, m4.no_secrets --------------------------------------------------------


def test_lines_valid_and_schema_whole() -> None:
    assert checks_m4.lines_valid(op("m4.log_schema", lines=3, errors=[], components=["zt-ra"])) is None
    assert "line 2" in str(checks_m4.lines_valid(op("m4.log_schema", "fail", lines=3, errors=["line 2: x"])))
    missing = checks_m4.schema_whole([op("m4.log_schema", components=["zt-ra", "service-a"])])
    assert "no log line from component ztca" in missing and len(missing) == 4


def audit(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "kind": "entries",
        "ca_issued": [OLD, NEW],
        "ca_revoked": [OLD],
        "audit_issued": [NEW, "0" + OLD],
        "audit_revoked": [OLD],
    }
    return d | over


@pytest.mark.parametrize(
    "details, why",
    [
        (audit(), None),
        (audit(audit_issued=[NEW]), "issued without an audit entry"),
        (audit(audit_issued=[OLD, NEW, "abc"]), "unknown serials"),
        (audit(audit_revoked=[]), "audit revoke entries []"),
        (audit(ca_revoked=[], audit_revoked=[]), "revoked nothing"),
        ({"kind": "verify", "exit_code": 0, "output": ""}, None),
        ({"kind": "verify", "exit_code": 1, "output": "line 7: edited"}, "line 7: edited"),
    ],
)
def test_audit_holds(details: dict[str, Any], why: str | None) -> None:
    got = checks_m4.audit_holds(op("m4.audit", **details))
    assert got == why if why is None else why in str(got)


def test_no_secrets_verdicts() -> None:
    kinds = {"key": 3, "token": 2}
    clean = op("m4.no_secrets", leaked=[], secret_kinds=kinds)
    assert checks_m4.no_leak(clean) is None and checks_m4.secrets_whole([clean]) == []
    assert "admin.token" in str(checks_m4.no_leak(op("m4.no_secrets", leaked=["ca/admin.token"])))
    assert checks_m4.secrets_whole([op("m4.no_secrets", leaked=[], secret_kinds={"key": 1})]) == [
        "the scan found no token to look for"
    ]


def test_milestone_4_is_registered_and_unknown_without_evidence() -> None:
    m = milestones.REGISTRY[4]
    assert {c.id for c in m.criteria} == {"m4.log_schema", "m4.events", "m4.metrics", "m4.audit", "m4.no_secrets"}
    assert {v.result for v in milestones.judge([m], History())} == {"unknown"}
    v = checkers.check(checks_m4.M4[2], History())
    assert v.result == "unknown"


# -- the pure parts --------------------------------------------------------------------------------


def test_prometheus_config_scrapes_every_component() -> None:
    topology = Topology(agent_metrics=True, prometheus=True)
    assert prometheus_config.jobs(topology) == [
        "zt-ra",
        "zt-crl",
        "agent-service-a",
        "agent-service-b",
        "service-a",
        "service-b",
    ]
    assert "agent-service-a" not in prometheus_config.jobs(Topology())
    doc = json.loads(
        prometheus_config.render(
            [
                prometheus_config.ScrapeTarget("zt-ra", "ra:8443", "/b.pem", "ra.zt.lab"),
                prometheus_config.ScrapeTarget("service-a", "service-a:9080"),
            ],
            1.0,
        )
    )
    assert doc["global"] == {"scrape_interval": "1000ms", "scrape_timeout": "1000ms", "evaluation_interval": "1000ms"}
    ra, svc = doc["scrape_configs"]
    assert ra["scheme"] == "https" and ra["tls_config"] == {"ca_file": "/b.pem", "server_name": "ra.zt.lab"}
    assert "scheme" not in svc and svc["static_configs"] == [{"targets": ["service-a:9080"]}]


PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg0123456789abcdef\n"
    "AB==\n"
    "-----END PRIVATE KEY-----\n"
)


def test_secret_scan_finds_a_key_logged_as_escaped_json_and_a_token(tmp_path: Path) -> None:
    (tmp_path / "gen-1").mkdir()
    (tmp_path / "gen-1" / "key.pem").write_text(PEM)
    (tmp_path / "client.token").write_text("tok_abcdefghijklmnop\n")
    (tmp_path / "cert.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nnot a secret at all, public\n-----END CERTIFICATE-----\n"
    )
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "x.token").write_text("ignored-because-under-logs\n")
    found = secrets_scan.in_dir(tmp_path, skip=[tmp_path / "logs"])
    assert sorted(Path(s.where).name for s in found) == ["client.token", "key.pem"]
    assert all("AB==" not in n for s in found for n in s.needles)  # too short to be a needle
    assert secrets_scan.leaks(json.dumps({"event": "x", "pem": PEM}), found) == [str(tmp_path / "gen-1" / "key.pem")]
    assert secrets_scan.leaks('{"event":"issued","serial":"ab"}', found) == []


def test_secret_scan_reads_container_tars() -> None:
    buf = BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("ca/admin.token", b"admin-secret-123456\n"), ("ca/root.pem", b"public")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, BytesIO(data))
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        found = secrets_scan.in_tar(tar, "ra:/var/lib/zt/ca")
    assert [s.where for s in found] == ["ra:/var/lib/zt/ca:ca/admin.token"]
    assert found[0].needles == ("admin-secret-123456",)


def test_event_tail_reads_as_a_line_per_event(tmp_path: Path) -> None:
    from zt.lab import event_tail

    log = tmp_path / "zt-ra.log"
    lines = [
        {
            "ts": "2030-01-01T00:00:01.250Z",
            "level": "info",
            "component": "zt-ra",
            "event": "issued",
            "serial": "4993e964478acd919a7709ff6bf0a92731527b03",
            "spiffe_id": "spiffe://zt.lab/svc/a",
            "via": "token",
        },
        {"ts": "2030-01-01T00:00:02.000Z", "level": "debug", "component": "zt-ra", "event": "noise"},
        {"ts": "2030-01-01T00:00:03.000Z", "level": "warn", "component": "zt-ra", "event": "locked_out", "source": "x"},
    ]
    log.write_text("\n".join(json.dumps(d) for d in lines) + "\nnot json\n")
    assert event_tail.tail(log, 5) == [
        "00:00:01.250 zt-ra            issued serial=4993e96447… spiffe_id=spiffe://zt.lab/svc/a via=token",
        "00:00:03.000 zt-ra            [warn] locked_out source=x",
    ]
    assert event_tail.main([str(tmp_path), "-n", "1"]) == 0
