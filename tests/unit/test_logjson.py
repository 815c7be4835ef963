"""zt.logjson renders every record as one schema-valid line (docs/logs.md), and keeps secrets out."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from zt import logjson
from zt.logjson import REDACTED, log_event, logging_to, scrub
from zt.logschema import validate_line

TOKEN = "ztb_" + "A" * 43
ADMIN = "zta_" + "b-_9" * 11
KEY = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    stream = io.StringIO()
    with logging_to(stream, "zt-test", "debug"):
        yield stream, logging.getLogger("zt.test.logjson")


def parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize(
    "level, expected",
    [
        (logging.DEBUG, "debug"),
        (logging.INFO, "info"),
        (logging.WARNING, "warn"),
        (logging.ERROR, "error"),
        (logging.CRITICAL, "error"),
    ],
)
def test_log_event_levels_map_to_the_schema_four(captured, level: int, expected: str) -> None:
    stream, log = captured
    log_event(log, "something_happened", level, serial="1f")
    [doc] = parsed(stream)
    assert doc["level"] == expected
    assert doc["component"] == "zt-test" and doc["event"] == "something_happened"
    assert validate_line(doc) == []


def test_a_plain_log_record_is_a_schema_valid_line_with_its_message(captured) -> None:
    stream, log = captured
    log.warning("disk %s is full", "/var")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it failed")
    first, second = parsed(stream)
    assert (first["event"], first["message"], first["logger"]) == ("log", "disk /var is full", "zt.test.logjson")
    assert second["level"] == "error" and "ValueError: boom" in second["exception"]
    assert validate_line(first) == [] and validate_line(second) == []
    assert len(stream.getvalue().splitlines()) == 2  # a traceback stays inside its one line


def test_datetimes_become_rfc3339_z_and_sets_sorted_lists(captured) -> None:
    stream, log = captured
    aware = dt.datetime(2026, 12, 1, 3, 4, 5, 678000, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    log_event(log, "crl_written", next_update=aware, not_after=dt.datetime(2026, 1, 2, 3, 4, 5), serials={"b", "a"})
    [doc] = parsed(stream)
    assert doc["next_update"] == "2026-12-01T01:04:05Z"
    assert doc["not_after"] == "2026-01-02T03:04:05Z"
    assert doc["serials"] == ["a", "b"]
    assert validate_line(doc) == []


def test_ts_is_utc_with_milliseconds(captured) -> None:
    stream, log = captured
    log_event(log, "tick")
    [doc] = parsed(stream)
    t = dt.datetime.strptime(doc["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    assert abs((dt.datetime.now(dt.UTC) - t).total_seconds()) < 5
    assert len(doc["ts"]) == len("2026-12-01T01:02:03.456Z")


def test_fields_cannot_overwrite_the_base_keys(captured) -> None:
    stream, log = captured
    log_event(log, "tick", ts="yesterday", component="mallory")
    [doc] = parsed(stream)
    assert doc["component"] == "zt-test" and doc["ts"] != "yesterday"


def test_secrets_in_fields_messages_and_exceptions_are_redacted(captured) -> None:
    stream, log = captured
    log_event(log, "rejected", reason=f"header was Bearer {TOKEN}", nested={"k": [ADMIN]}, key=KEY)
    log.info("admin %s", ADMIN)
    try:
        raise RuntimeError(f"cannot parse {KEY}")
    except RuntimeError:
        log.exception("failed")
    text = stream.getvalue()
    assert TOKEN not in text and ADMIN not in text and "PRIVATE KEY" not in text and "MIGHAgEA" not in text
    first = parsed(stream)[0]
    assert first["reason"] == f"header was Bearer {REDACTED}"
    assert first["nested"] == {"k": [REDACTED]} and first["key"] == REDACTED + "\n"


@pytest.mark.parametrize(
    "text",
    ["ztb_short", "spiffe://zt.lab/svc/ztb_service", "zt-agent", "a PRIVATE KEY is a key", "1f3a"],
)
def test_scrub_leaves_ordinary_text_alone(text: str) -> None:
    assert scrub(text) == text


def test_scrub_catches_a_truncated_key_block() -> None:
    assert scrub("got -----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI") == f"got {REDACTED}"


def test_logging_to_restores_the_root_logger(captured) -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    with logging_to(stream, "ztca"):
        logging.getLogger("x").info("inside")
    logging.getLogger("x").info("outside")
    assert root.handlers == handlers and root.level == level
    assert [d["message"] for d in parsed(stream)] == ["inside"]


def test_setup_routes_the_root_logger_to_stderr_with_the_component(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    # What a daemon's lines do not use and setup stops gathering: put back for the other tests.
    for flag in ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, flag, getattr(logging, flag))
    try:
        logjson.setup("zt-crl", "info")
        assert logging._srcfile is None and not logging.logThreads and not logging.logProcesses
        log_event(logging.getLogger("zt.crl.test"), "crl_loaded", crl_number=3, entries=0)
        logging.getLogger("zt.crl.test").debug("not at info")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    [line] = capsys.readouterr().err.splitlines()
    doc = json.loads(line)
    assert doc["component"] == "zt-crl" and doc["crl_number"] == 3
    assert validate_line(doc) == []


@pytest.mark.parametrize(
    "created",
    [0.0, 1.0000005, 1700000000.0005, 1700000000.9995, 1700000000.9999996, 1700000001 - 1e-7, 4102444799.9996],
)
def test_line_time_is_what_datetime_makes_of_it_at_the_millisecond_boundaries(created: float) -> None:
    expected = logjson.rfc3339_utc(dt.datetime.fromtimestamp(created, dt.UTC), millis=True)
    line_time = logjson._LineTime()
    assert line_time(created) == expected
    assert line_time(created) == expected  # the second from the cache
