"""`zt-agent rotate --pid-file F`: refuses clearly (exit 1) unless F names a running zt-agent.

A stale pid file must never lead to a signal: SIGUSR1's default action ends the process that
now holds the number. The happy path (a real agent renewing) is in tests/e2e/test_agent_rotation.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from zt.agent.control import AgentPidFile, rotate_main


def rotate(pid_file: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = rotate_main(["--pid-file", str(pid_file)])
    return code, capsys.readouterr().err


def test_rotate_with_a_missing_pid_file_exits_1_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = rotate(tmp_path / "agent.pid", capsys)
    assert code == 1 and "cannot read pid file" in err and "agent.pid" in err


@pytest.mark.parametrize("content", ["", "not-a-pid\n", "-5\n", "1\n"])
def test_rotate_with_a_pid_file_without_a_pid_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    f = tmp_path / "agent.pid"
    f.write_text(content)
    code, err = rotate(f, capsys)
    assert code == 1 and "does not hold a PID" in err


def test_rotate_with_the_pid_of_a_finished_process_exits_1_as_stale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    f = tmp_path / "agent.pid"
    f.write_text(done.stdout)
    code, err = rotate(f, capsys)
    assert code == 1 and "stale pid file" in err and "no process" in err


def test_rotate_never_signals_a_process_that_is_not_an_agent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        f = tmp_path / "agent.pid"
        f.write_text(f"{other.pid}\n")
        code, err = rotate(f, capsys)
        assert code == 1 and "is not a zt-agent" in err
        assert other.poll() is None  # still running: SIGUSR1 would have killed it
    finally:
        other.kill()
        other.wait()


def test_rotate_without_pid_file_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert rotate_main([]) == 2
    assert "--pid-file" in capsys.readouterr().err


def test_agent_pid_file_is_0644_and_removed_only_while_it_is_ours(tmp_path: Path) -> None:
    f = tmp_path / "run" / "agent.pid"
    pid_file = AgentPidFile(f)
    pid_file.write()
    assert f.read_text().strip() == str(os.getpid())
    assert f.stat().st_mode & 0o777 == 0o644
    pid_file.remove()
    assert not f.exists()
    f.write_text("999999\n")  # a successor's file
    pid_file.remove()
    assert f.exists()
