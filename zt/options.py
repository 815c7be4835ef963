"""Flags that also read environment variables and an optional TOML config file.

Daemon users expect all three: flags for scripts, environment variables for containers, a
config file for hosts. Precedence: flag > environment > config file > built-in default.
Each flag `--some-flag` reads `<PREFIX>_SOME_FLAG`; the config file (`--config FILE`, or
`<PREFIX>_CONFIG`) is a flat TOML table whose keys are the flag names (`some-flag` or
`some_flag`). `--help` shows each flag's variable.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zt.errors import ConfigError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_name(prefix: str, dest: str) -> str:
    return f"{prefix}_{dest.upper()}"


def annotate_help(parser: argparse.ArgumentParser, prefix: str) -> None:
    """Append '[env: PREFIX_FLAG]' to every option's help text."""
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "version"):
            continue
        note = f"[env: {env_name(prefix, action.dest)}]"
        action.help = f"{action.help} {note}" if action.help else note


def _from_text(action: argparse.Action, text: str) -> Any:
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"{action.dest}: expected true/false, got {text!r}")
    if isinstance(action, argparse._AppendAction):
        items = [t.strip() for t in text.split(",") if t.strip()]
        return [action.type(i) if action.type else i for i in items]  # type: ignore[operator]
    if action.type is not None:
        try:
            return action.type(text)  # type: ignore[operator]
        except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
            raise ConfigError(f"{action.dest}: {e}") from e
    return text


def _load_config(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from e
    return {k.replace("-", "_"): v for k, v in data.items()}


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None, prefix: str) -> argparse.Namespace:
    """Parse argv with defaults taken from the config file and the environment."""
    if not any(a.dest == "config" for a in parser._actions):
        parser.add_argument("--config", type=Path, help="TOML file with defaults for these flags")
    annotate_help(parser, prefix)
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--config", type=Path)
    known, _ = probe.parse_known_args(list(argv) if argv is not None else None)
    env_config = os.environ.get(env_name(prefix, "config"))
    config_path: Path | None = known.config or (Path(env_config) if env_config else None)
    config = _load_config(config_path) if config_path else {}
    by_dest = {a.dest: a for a in parser._actions if a.option_strings}
    unknown = set(config) - set(by_dest)
    if unknown:
        raise ConfigError(f"config file {config_path}: unknown keys {', '.join(sorted(unknown))}")
    defaults: dict[str, Any] = {}
    for dest, action in by_dest.items():
        if dest in ("help", "version", "config"):
            continue
        value: Any = None
        if dest in config:
            raw = config[dest]
            value = _from_text(action, str(raw)) if not isinstance(raw, (bool, list)) else raw
        env = os.environ.get(env_name(prefix, dest))
        if env is not None:
            value = _from_text(action, env)
        if value is not None:
            defaults[dest] = value
            action.required = False
    parser.set_defaults(**defaults)
    return parser.parse_args(argv)
