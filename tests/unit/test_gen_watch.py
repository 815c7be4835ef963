"""The lab catches a generation being written (chaos plan 6b), and only one being written."""

from __future__ import annotations

import threading
from pathlib import Path

from zt.lab import gen_watch


def test_gen_watch_sees_a_generation_without_svid_json_and_ignores_whole_and_old_ones(tmp_path: Path) -> None:
    (tmp_path / "gen-old").mkdir()  # there before the watch: not the write it waits for
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / "svid.json").write_text("{}")
    timer = threading.Timer(0.05, lambda: staged.rename(tmp_path / "gen-whole"))  # appears whole at once
    timer.start()
    assert gen_watch.wait_for_write(tmp_path, 0.3, lambda: True) is None  # complete at once: not mid-write
    timer.join()
    timer = threading.Timer(0.05, lambda: (tmp_path / "gen-new").mkdir())
    timer.start()
    assert gen_watch.wait_for_write(tmp_path, 5.0, lambda: True) == "gen-new"
    timer.join()


def test_gen_watch_stops_when_the_writer_is_gone(tmp_path: Path) -> None:
    assert gen_watch.wait_for_write(tmp_path, 5.0, lambda: False) is None
