"""Structured JSON log lines on stderr, one object per line, for every zt Python component.

Operators grep and ship these; tests parse them; the lab and CI check each against the one
log-line schema (zt/log_line.schema.json, zt.logschema, docs/logs.md) that the C++ and Java
services follow too. Each line has `ts` (UTC, milliseconds, Z), `level`
(debug|info|warn|error), `component` (zt-ra, zt-crl, zt-agent, ztca) and `event`, then the
event's fields.

Values are rendered the schema's way here, once, rather than at every call site: a datetime
becomes RFC 3339 UTC with a Z, a set or tuple a list.

Secrets are never passed to `log_event` (callers pass serials and SPIFFE IDs, not keys or
tokens). As a second line of defence every string that reaches a line is scrubbed of what
looks like a zt token (`ztb_`/`zta_` + 43 base64url characters) or a PEM private key block,
so an exception text that quotes a request header cannot leak one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import re
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

_COMPONENT = "zt"

# logging's level names -> the schema's four levels.
_LEVELS = {"debug": "debug", "info": "info", "warning": "warn", "error": "error", "critical": "error"}

# A zt token is a prefix and secrets.token_urlsafe(32) (43 characters); match from 16 so a
# truncated one is caught too. A PEM private key: the whole block, or what is left of it.
_SECRET = re.compile(
    r"\bzt[ab]_[A-Za-z0-9_-]{16,}"
    r"|-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY-----|.*)",
    re.DOTALL,
)
REDACTED = "[redacted]"


def scrub(text: str) -> str:
    """`text` with anything that looks like a zt token or a private key replaced."""
    return _SECRET.sub(REDACTED, text) if ("zt" in text or "PRIVATE KEY" in text) else text


def rfc3339_utc(t: dt.datetime, *, millis: bool = False) -> str:
    """RFC 3339, UTC, trailing Z (naive datetimes are taken as UTC)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    t = t.astimezone(dt.UTC)
    if millis:
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class _LineTime:
    """`ts` of a line: RFC 3339 UTC with milliseconds, as `rfc3339_utc(..., millis=True)` makes
    it from `datetime.fromtimestamp` (same rounding of the microseconds), with the part up to
    the second formatted once per second: strftime was a tenth of a line's cost (issue 15)."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, created: float) -> str:
        frac, whole = math.modf(created)
        us = round(frac * 1e6)  # datetime.fromtimestamp's rounding (half to even)
        if us >= 1_000_000:
            whole, us = whole + 1, us - 1_000_000
        elif us < 0:
            whole, us = whole - 1, us + 1_000_000
        second = int(whole)
        if second != self._second:
            self._second, self._prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{us // 1000:03d}Z"


def _plain(value: Any) -> Any:
    """A field value as the schema wants it: JSON types only, datetimes as RFC 3339 Z, no secrets."""
    if isinstance(value, str):
        return scrub(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dt.datetime):
        return rfc3339_utc(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    return scrub(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, tagged with `component` (the process's name in the logs)."""

    def __init__(self, component: str | None = None) -> None:
        super().__init__()
        self.component = component
        self._ts = _LineTime()

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": self._ts(record.created),
            "level": _LEVELS.get(record.levelname.lower(), "info"),
            "component": self.component or _COMPONENT,
            "event": getattr(record, "event", None) or "log",
        }
        fields = getattr(record, "fields", None)
        if fields:
            # The base keys are the formatter's: a field cannot overwrite them.
            doc.update({k: _plain(v) for k, v in fields.items() if k not in doc})
        if not getattr(record, "event", None):
            doc["logger"] = record.name
            doc["message"] = scrub(record.getMessage())
        if record.exc_info:
            doc["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(doc, default=str, separators=(",", ":"))


def _quiet_noisy_loggers() -> None:
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def setup(component: str, level: str = "info") -> None:
    """Route the root logger to stderr as JSON lines, tagged with the component name (daemons).

    The lines hold none of what `logging` gathers by default for other formats, so a daemon
    does not gather it (the Python logging HOWTO, "Optimization"): the caller's file and line
    (a walk up the stack per record), the thread's and the process's names. Measured on the
    RA's `issued` line: 45 -> 32 microseconds, paid on the event loop once per certificate.
    """
    global _COMPONENT
    _COMPONENT = component
    logging._srcfile = None  # no findCaller
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(component))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    _quiet_noisy_loggers()


@contextlib.contextmanager
def logging_to(stream: TextIO, component: str, level: str = "info") -> Iterator[None]:
    """JSON lines to `stream` for the length of one command (ztca), then as it was before.

    A CLI's `main()` runs many times in one test process; unlike `setup`, this adds its handler
    beside whatever is there (pytest's) and removes it afterwards, and restores the root level.
    """
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(component))
    handler.setLevel(level.upper())
    root = logging.getLogger()
    before = root.level
    root.addHandler(handler)
    root.setLevel(min(before, handler.level))  # NOTSET (0) already lets everything through
    _quiet_noisy_loggers()
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(before)


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """One line: `event` (a name matching ^[a-z][a-z0-9_]*$) with its fields (docs/logs.md)."""
    logger.log(level, event, extra={"event": event, "fields": fields})
