"""ztca's log lines (stderr, component `ztca`, docs/logs.md), in-process: one per thing done,
schema-valid, beside an unchanged human answer on stdout, and never the token it prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import CaDir, CliResult, run_ztca
from zt.logschema import validate_text


def logged(r: CliResult) -> list[dict[str, Any]]:
    assert validate_text(r.err) == [], r.err
    return [json.loads(line) for line in r.err.splitlines()]


def test_register_issue_revoke_log_one_valid_line_each_and_keep_stdout_human(ca: CaDir, tmp_path: Path) -> None:
    r = ca.ztca("register", "svc")
    assert r.code == 0
    token = r.out.splitlines()[-1]
    assert token.startswith("ztb_") and r.out.startswith("registered spiffe://zt.lab/svc/svc\n")
    [reg] = logged(r)
    assert (reg["component"], reg["event"], reg["service"], reg["actor"]) == ("ztca", "registered", "svc", "ztca")
    assert token not in r.err

    r = ca.ztca("issue", "svc", "--out", str(tmp_path / "svc"))
    assert r.code == 0 and r.out.startswith("issued ")
    issued, written = logged(r)
    serial = r.out.split()[1]
    assert (issued["event"], issued["serial"], issued["via"], issued["actor"]) == ("issued", serial, "admin", "ztca")
    assert (written["event"], written["serial"], written["out"]) == ("identity_written", serial, str(tmp_path / "svc"))
    assert "PRIVATE KEY" not in r.err

    r = ca.ztca("revoke", serial.upper(), "--reason", "key-compromise")
    assert r.code == 0 and r.out.startswith(f"revoked 1 certificate(s): {serial}; CRL ")
    [rev] = logged(r)
    assert rev["event"] == "revoked" and rev["serials"] == [serial] and rev["service"] is None
    assert rev["reason"] == "key-compromise" and rev["actor"] == "ztca"
    assert rev["crl_number"] == int(r.out.rsplit("CRL ", 1)[1].split()[0])

    r = ca.ztca("revoke", "--service", "svc", "--json")
    [rev] = logged(r)
    assert rev["serials"] == [] and rev["service"] == "svc" and r.json()["revoked"] == []


def test_read_only_verbs_log_nothing(ca: CaDir) -> None:
    for verb in ("list", "status"):
        r = ca.ztca(verb)
        assert r.code == 0 and r.err == "", (verb, r.err)


def test_init_logs_ca_created_without_the_admin_token(tmp_path: Path) -> None:
    r = run_ztca("init", "--dir", str(tmp_path / "ca"))
    assert r.code == 0, r.err
    [created] = logged(r)
    assert created["event"] == "ca_created" and created["crl_number"] == 1
    admin = (tmp_path / "ca" / "admin.token").read_text().strip()
    assert admin not in r.err and admin not in r.out


def test_a_failed_command_ends_with_one_plain_line_and_no_event(ca: CaDir) -> None:
    r = ca.ztca("revoke", "abcdef")
    assert r.code == 1
    assert r.err == "ztca revoke: no certificate with serial abcdef\n"
