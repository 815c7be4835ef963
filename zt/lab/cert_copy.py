"""A local copy of an agent's certificate directory that lives in a container volume.

Scenarios hold identities as directories in the agent's layout (docs/contracts.md §2):
`gen-*/` generations, a `current` symlink swapped by rename(2), convenience links
(`key.pem -> current/key.pem`, ...) and `crl.pem`. The container runtime copies the
generation `current` points to out of the agent's container and lays it out the same way
here, so a scenario cannot tell the copy from the agent's own directory.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from pathlib import Path, PurePosixPath

from zt.lab.box import Box
from zt.lab.host_identities import LabError

CURRENT = "current"


def point_current(local: Path, gen: str) -> None:
    """Swap `current` to `gen` atomically and link each file of the generation from `local`,
    as the agent's writer does (docs/contracts.md §2)."""
    tmp = local / f".{CURRENT}.{secrets.token_hex(4)}.tmp"
    os.symlink(gen, tmp)
    os.replace(tmp, local / CURRENT)
    for f in sorted((local / gen).iterdir()):
        link = local / f.name
        if f.is_file() and not link.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            os.symlink(f"{CURRENT}/{f.name}", link)


def current_generation(box: Box, agent_dir: str, tries: int = 3) -> str:
    """The generation `current` names, by `readlink` in the agent's container. Under load an
    exec has come back with exit 0 and no output at all (a lab run on a machine at load 12-16:
    the agent had written `current` long before): that answer is asked again, a few times."""
    code, out = 0, ""
    for _ in range(tries):
        code, out = box.exec("readlink", f"{agent_dir}/{CURRENT}")
        gen = PurePosixPath(out.strip()).name
        if code == 0 and gen.startswith("gen-"):
            return gen
        if code != 0 or out.strip():
            break  # a real answer: no current generation
        time.sleep(0.2)
    raise LabError(f"{box.name} has no current generation: readlink exit {code}: {out.strip()!r}")


def sync_from(box: Box, agent_dir: str, local: Path) -> Path:
    """Copy the agent's current generation (once per generation) and its crl.pem into `local`."""
    local.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):  # the agent may rotate (and prune) between readlink and the copy
        gen = current_generation(box, agent_dir)
        if (local / gen / "svid.json").exists():
            break
        tmp = local / f".{gen}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            with box.read_tar(f"{agent_dir}/{gen}") as tar:
                tar.extractall(tmp, filter="data")
        except Exception as e:
            if attempt == 2:
                raise LabError(f"cannot copy {gen} out of {box.name}: {e}") from e
            continue
        (tmp / gen).rename(local / gen)
        tmp.rmdir()
        break
    point_current(local, gen)
    with contextlib.suppress(Exception):  # absent until the agent's first CRL fetch
        box.copy_file(f"{agent_dir}/crl.pem", local / "crl.pem")
    return local
