"""Sweeping what container-runtime runs left behind when their process died.

Every container, network and volume of a run carries the labels `zt.lab.run` and
`zt.lab.pid` (zt.lab.box). A run stopped by SIGKILL or a lost session cannot remove its
own; the next run removes whatever belongs to a PID that no longer exists, and never a
live run's, so concurrent runs on one engine do not disturb each other.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

from zt.lab.box import LABEL_PID, LABEL_RUN
from zt.lab.core import progress

if TYPE_CHECKING:
    import docker


def _pid_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(client: docker.DockerClient) -> None:
    """Remove the containers, networks and volumes of runs whose process is gone."""
    filters: dict[str, str | list[str] | bool] = {"label": LABEL_RUN}
    found: list[tuple[str, dict[str, str] | None, Any]] = []  # containers first: they hold the rest
    found += [(f"container {c.name}", c.labels, c) for c in client.containers.list(all=True, filters=filters)]
    found += [(f"network {n.name}", n.attrs.get("Labels"), n) for n in client.networks.list(filters=filters)]
    found += [(f"volume {v.name}", v.attrs.get("Labels"), v) for v in client.volumes.list(filters=filters)]
    for what, labels, obj in found:
        if not _pid_alive((labels or {}).get(LABEL_PID, "")):
            progress(f"sweeping {what} of a dead run ({(labels or {}).get(LABEL_RUN)})")
            with contextlib.suppress(Exception):
                obj.remove(**({} if what.startswith("network") else {"force": True}))
