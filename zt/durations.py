"""Durations as operators write them: '90', '90s', '15m', '1h', '7d'."""

from __future__ import annotations

import argparse
import datetime as dt
import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")


def parse_duration(text: str) -> dt.timedelta:
    m = _PATTERN.fullmatch(text.strip().lower())
    if not m:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use e.g. 30s, 15m, 1h, 7d")
    return dt.timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2) or "s"])


def host_port(text: str) -> tuple[str, int]:
    """'HOST:PORT' (IPv6 as '[::1]:PORT') -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)
