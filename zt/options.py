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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from zt.errors import ConfigError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_BOOLEAN_ACTIONS = {"store_true", "store_false"}


class LayeredParser(argparse.ArgumentParser):
    """An ArgumentParser that remembers its flags, so defaults can come from env and file.

    Why a subclass: argparse has no public way to list a parser's options or to ask what kind
    of action one is. `add_argument` is public and returns the Action, so we record each
    option with the action name it was declared with; everything else is argparse as usual.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.flags: list[tuple[argparse.Action, str]] = []  # before super(): it adds --help
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        if action.option_strings:
            kind = kwargs.get("action", "store")
            self.flags.append((action, kind if isinstance(kind, str) else "custom"))
        return action


def env_name(prefix: str, dest: str) -> str:
    return f"{prefix}_{dest.upper()}"


def _layered_flags(parser: LayeredParser) -> dict[str, tuple[argparse.Action, str]]:
    return {a.dest: (a, kind) for a, kind in parser.flags if a.dest not in ("help", "version", "config")}


def annotate_help(parser: LayeredParser, prefix: str) -> None:
    """Append '[env: PREFIX_FLAG]' to every option's help text."""
    for dest, (action, _) in _layered_flags(parser).items():
        note = f"[env: {env_name(prefix, dest)}]"
        action.help = f"{action.help} {note}" if action.help else note


def _from_text(action: argparse.Action, kind: str, text: str) -> Any:
    if kind in _BOOLEAN_ACTIONS:
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"{action.dest}: expected true/false, got {text!r}")
    convert: Callable[[str], Any] = action.type if callable(action.type) else str
    try:
        if kind == "append":
            return [convert(t.strip()) for t in text.split(",") if t.strip()]
        return convert(text)
    except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
        raise ConfigError(f"{action.dest}: {e}") from e


def _load_config(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from e
    return {k.replace("-", "_"): v for k, v in data.items()}


def parse(parser: LayeredParser, argv: Sequence[str] | None, prefix: str) -> argparse.Namespace:
    """Parse argv with defaults taken from the config file and the environment."""
    if not any(a.dest == "config" for a, _ in parser.flags):
        parser.add_argument("--config", type=Path, help="TOML file with defaults for these flags")
    annotate_help(parser, prefix)
    probe = argparse.ArgumentParser(add_help=False)
    probe.add_argument("--config", type=Path)
    known, _ = probe.parse_known_args(list(argv) if argv is not None else None)
    env_config = os.environ.get(env_name(prefix, "config"))
    config_path: Path | None = known.config or (Path(env_config) if env_config else None)
    config = _load_config(config_path) if config_path else {}
    flags = _layered_flags(parser)
    unknown = set(config) - set(flags)
    if unknown:
        raise ConfigError(f"config file {config_path}: unknown keys {', '.join(sorted(unknown))}")
    defaults: dict[str, Any] = {}
    for dest, (action, kind) in flags.items():
        value: Any = None
        if dest in config:
            raw = config[dest]
            value = _from_text(action, kind, str(raw)) if not isinstance(raw, (bool, list)) else raw
        env = os.environ.get(env_name(prefix, dest))
        if env is not None:
            value = _from_text(action, kind, env)
        if value is not None:
            defaults[dest] = value
            action.required = False
    parser.set_defaults(**defaults)
    return parser.parse_args(argv)
