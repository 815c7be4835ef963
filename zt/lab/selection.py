"""Which milestones `zt-lab run` selected, handed to the lab's pytest plugin.

A module of its own (not zt.lab.pytest_plugin) so that the CLI can make it before pytest
starts without importing the plugin module first, which pytest must import itself to
rewrite its asserts.
"""

from __future__ import annotations

import pytest

from zt.lab.milestones import Milestone

SELECTED = pytest.StashKey[list[Milestone]]()


class Selection:
    """A plugin object for pytest.main: puts the selected milestones in the config's stash."""

    def __init__(self, selected: list[Milestone]) -> None:
        self.selected = selected

    def pytest_configure(self, config: pytest.Config) -> None:
        config.stash[SELECTED] = self.selected
