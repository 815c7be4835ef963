"""A readable tail of a run's logs for a person (`./demo.sh observe`): the last few events of
each component, one line each — time, component, event, then the fields that say what
happened (serials shortened, SPIFFE IDs kept whole) — instead of raw JSON.

    python -m zt.lab.event_tail DIR [-n 4]     every *.log in DIR (a report's logs/<module>/)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zt.lab.log_evidence import NOT_ZT, SERIAL_FIELDS, events

# Routine lines a person does not need in a short tail.
QUIET = {"metrics_listening", "crl_fetch", "crl_not_modified", "healthz", "request", "log"}
BASE = ("ts", "level", "component", "service", "event")


def _short(key: str, value: Any) -> str:
    if key in SERIAL_FIELDS and isinstance(value, str) and len(value) > 12:
        return value[:10] + "…"
    if key == "serials" and isinstance(value, list):
        return "[" + ",".join(_short("serial", v) for v in value) + "]"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def format_event(doc: dict[str, Any]) -> str:
    """`HH:MM:SS.mmm component event key=value ...` for one log line."""
    ts = str(doc.get("ts", ""))[11:23]
    who = doc.get("component") or doc.get("service") or "?"
    fields = " ".join(f"{k}={_short(k, v)}" for k, v in doc.items() if k not in BASE and v is not None)
    level = "" if doc.get("level") in ("info", None) else f"[{doc.get('level')}] "
    return f"{ts} {who:<16} {level}{doc.get('event', '?')} {fields}".rstrip()


def tail(log: Path, n: int) -> list[str]:
    docs = [
        d for d in events(log.read_text(errors="replace")) if d.get("event") not in QUIET and d.get("level") != "debug"
    ]
    return [format_event(d) for d in docs[-n:]]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m zt.lab.event_tail", description=__doc__.splitlines()[0])
    p.add_argument("dir", type=Path, help="a directory of component logs (*.log)")
    p.add_argument("-n", type=int, default=4, help="events per component (default 4)")
    args = p.parse_args(argv)
    logs = sorted(f for f in args.dir.glob("*.log") if f.stem not in NOT_ZT)
    if not logs:
        print(f"no logs in {args.dir}", file=sys.stderr)
        return 1
    for log in logs:
        lines = tail(log, args.n)
        if lines:
            print(f"--- {log.stem} (last {len(lines)} events)")
            print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
