"""The lab catches a generation being written (chaos plan 6b), and only one being written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from zt.lab import gen_watch


def writer_that(act: Callable[[], object]) -> Callable[[], bool]:
    """An `alive` check that performs `act` the first time the watch asks, so the write happens
    after the watch took its snapshot of the directory (a timer could fire before it, on a busy
    machine, and the test would see an old generation, not a new one)."""
    done: list[bool] = []

    def alive() -> bool:
        if not done:
            act()
            done.append(True)
        return True

    return alive


def test_gen_watch_sees_a_generation_without_svid_json_and_ignores_whole_and_old_ones(tmp_path: Path) -> None:
    (tmp_path / "gen-old").mkdir()  # there before the watch: not the write it waits for
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / "svid.json").write_text("{}")
    appears_whole = writer_that(lambda: staged.rename(tmp_path / "gen-whole"))
    assert gen_watch.wait_for_write(tmp_path, 0.3, appears_whole) is None  # complete at once: not mid-write
    assert (tmp_path / "gen-whole").is_dir()
    being_written = writer_that(lambda: (tmp_path / "gen-new").mkdir())
    assert gen_watch.wait_for_write(tmp_path, 5.0, being_written) == "gen-new"


def test_gen_watch_stops_when_the_writer_is_gone(tmp_path: Path) -> None:
    assert gen_watch.wait_for_write(tmp_path, 5.0, lambda: False) is None
