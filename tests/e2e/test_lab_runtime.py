"""The process runtime tears everything down when bring-up fails part-way."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zt.lab import services
from zt.lab.process_runtime import ProcessRuntime
from zt.lab.topology import ServiceSpec, Topology


def test_failed_bring_up_stops_every_started_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = ServiceSpec("service-a", "cpp", "build/service-a", expect_peer="service-a", reload="signal")
    monkeypatch.setitem(services.BINARIES, "service-a", tmp_path / "no-such-binary")
    started: list[int] = []
    real_start = ProcessRuntime.start

    def spy(self: ProcessRuntime, topology: Topology, work_dir: Path):  # type: ignore[no-untyped-def]
        from zt.lab import process

        original = process.start

        def recording(*a, **kw):  # type: ignore[no-untyped-def]
            p = original(*a, **kw)
            started.append(p.pid)
            return p

        monkeypatch.setattr(process, "start", recording)
        return real_start(self, topology, work_dir)

    monkeypatch.setattr(ProcessRuntime, "start", spy)
    with pytest.raises(Exception, match="no-such-binary"):
        ProcessRuntime().start(Topology(services=(missing,)), tmp_path / "work")
    assert len(started) >= 3  # RA, CRL publisher, the agent
    for pid in started:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
