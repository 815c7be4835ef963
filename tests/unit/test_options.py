"""Flags read the environment and a TOML config file; precedence flag > env > file > default."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from zt import options
from zt.durations import host_port, parse_duration
from zt.errors import ConfigError


def parser() -> options.LayeredParser:
    p = options.LayeredParser()
    p.add_argument("--listen", type=host_port, default=("127.0.0.1", 1))
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--name", action="append")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--must", required=True)
    return p


def test_precedence_flag_env_file_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('workers = 3\nlisten = "0.0.0.0:9"\nmust = "file"\nname = ["a", "b"]\n')
    monkeypatch.setenv("ZT_T_WORKERS", "5")
    monkeypatch.setenv("ZT_T_VERBOSE", "yes")
    a = options.parse(parser(), ["--config", str(cfg), "--must", "flag"], "ZT_T")
    assert a.workers == 5 and a.listen == ("0.0.0.0", 9) and a.must == "flag" and a.verbose is True
    assert a.name == ["a", "b"]
    monkeypatch.setenv("ZT_T_MUST", "env")
    monkeypatch.setenv("ZT_T_NAME", "x,y")
    a = options.parse(parser(), [], "ZT_T")
    assert a.must == "env" and a.name == ["x", "y"] and a.workers == 5


def test_bad_config_and_env_values_are_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("nonsense = 1\n")
    with pytest.raises(ConfigError, match="unknown keys nonsense"):
        options.parse(parser(), ["--config", str(cfg), "--must", "x"], "ZT_T")
    cfg.write_text("this is not toml = = =")
    with pytest.raises(ConfigError, match="not valid TOML"):
        options.parse(parser(), ["--config", str(cfg), "--must", "x"], "ZT_T")
    monkeypatch.setenv("ZT_T_VERBOSE", "maybe")
    with pytest.raises(ConfigError, match="true/false"):
        options.parse(parser(), ["--must", "x"], "ZT_T")


def test_help_names_each_environment_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        options.parse(parser(), ["--help"], "ZT_T")
    assert "[env: ZT_T_LISTEN]" in capsys.readouterr().out


@pytest.mark.parametrize("text, seconds", [("90", 90), ("30s", 30), ("15m", 900), ("1h", 3600), ("2d", 172800)])
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "1y", "-5s", "abc"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)
