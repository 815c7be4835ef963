"""Structured JSON log lines on stderr, one object per line, for every zt daemon.

Operators grep and ship these; tests parse them. Each line has ts, level, component, event,
and the event's fields. Secrets are never passed to `log_event` (callers pass serials and
SPIFFE IDs, not keys or tokens).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

_COMPONENT = "zt"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        t = dt.datetime.fromtimestamp(record.created, dt.UTC)
        doc: dict[str, Any] = {
            "ts": t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z",
            "level": record.levelname.lower().replace("warning", "warn"),
            "component": _COMPONENT,
            "event": getattr(record, "event", None) or "log",
        }
        fields = getattr(record, "fields", None)
        if fields:
            doc.update(fields)
        if not getattr(record, "event", None):
            doc["message"] = record.getMessage()
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, separators=(",", ":"))


def setup(component: str, level: str = "info") -> None:
    """Route the root logger to stderr as JSON lines, tagged with the component name."""
    global _COMPONENT
    _COMPONENT = component
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    logger.log(level, event, extra={"event": event, "fields": fields})
