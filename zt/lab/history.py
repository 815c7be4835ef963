"""The history of a run: every operation a scenario performed against the system.

As in Jepsen, clients record what they did and what they saw; checkers decide afterwards.
An operation's `outcome` is what happened: "ok" (the request completed), "fail" (it was
definitely refused or failed), or "unknown" (no answer, e.g. a timeout: it may or may not have
taken effect). `details` hold raw observations (peer SPIFFE ID, serials, status, error text),
never a pre-computed verdict.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Outcome = Literal["ok", "fail", "unknown"]


@dataclass(frozen=True)
class Operation:
    criterion: str  # e.g. "m1.a_calls_b"
    actor: str  # who acted: "test", "service-a", "curl", "openssl"
    op: str  # "call", "hello", "curl", "validate", ...
    target: str
    outcome: Outcome
    start: float
    end: float
    details: dict[str, Any] = field(default_factory=dict)


class History:
    def __init__(self) -> None:
        self._ops: list[Operation] = []
        self._lock = threading.Lock()

    def record(
        self, criterion: str, actor: str, op: str, target: str, outcome: Outcome, start: float, **details: Any
    ) -> Operation:
        o = Operation(criterion, actor, op, target, outcome, start, time.time(), details)
        with self._lock:
            self._ops.append(o)
        return o

    def operations(self, criterion: str | None = None) -> list[Operation]:
        with self._lock:
            return [o for o in self._ops if criterion is None or o.criterion == criterion]

    def write_jsonl(self, path: Path) -> None:
        with open(path, "w") as f:
            for o in self.operations():
                f.write(json.dumps(asdict(o), default=str) + "\n")

    @classmethod
    def read_jsonl(cls, path: Path) -> History:
        h = cls()
        for line in path.read_text().splitlines():
            if line.strip():
                h._ops.append(Operation(**json.loads(line)))
        return h

    def extend(self, ops: Iterable[Operation]) -> None:
        with self._lock:
            self._ops.extend(ops)
