"""Every secret a lab run created, and whether any log line gives one away.

The secrets are found where the components keep them, by the names the layout gives them
(zt/ca/layout.py, the agent's writer): private keys (`key.pem`, `*.key`), one-time and admin
tokens (`*.token`, an agent's `token`, `admin.token`), PKCS#12 passwords (`keystore.pass`).
A leak is any of a secret's needles in a log: a token or a password as written, and for a
PEM key each line of its base64 body (a JSON-escaped PEM keeps those lines whole, so a key
logged by mistake is found even with `\\n` between them).
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SECRET_NAMES = ("key.pem", "admin.token", "keystore.pass", "token")
SECRET_SUFFIXES = (".key", ".token")
MIN_NEEDLE = 16  # shorter fragments (a PEM's last line, "==") would match by chance


def is_secret_name(name: str) -> bool:
    return name in SECRET_NAMES or name.endswith(SECRET_SUFFIXES)


@dataclass(frozen=True)
class Secret:
    where: str  # the file it was read from (host path, or container:path)
    needles: tuple[str, ...]


def needles(content: bytes) -> tuple[str, ...]:
    """What to look for in logs: a PEM's base64 body lines, or the value itself."""
    text = content.decode(errors="replace").strip()
    if text.startswith("-----BEGIN"):
        body = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("-----")]
        return tuple(ln for ln in body if len(ln) >= MIN_NEEDLE and ":" not in ln)  # no PEM headers
    return (text,) if len(text) >= 8 else ()


def in_dir(root: Path, *, skip: Iterable[Path] = ()) -> list[Secret]:
    """Secret files under `root` (a host directory), except under `skip` (e.g. the logs)."""
    skipped = [p.resolve() for p in skip]
    out = []
    for p in sorted(root.rglob("*")) if root.exists() else []:
        if p.is_symlink() or not p.is_file() or not is_secret_name(p.name):
            continue
        if any(p.resolve().is_relative_to(s) for s in skipped):
            continue
        if found := needles(p.read_bytes()):
            out.append(Secret(str(p), found))
    return out


def in_tar(tar: tarfile.TarFile, where: str) -> list[Secret]:
    """Secret files in a tar stream read out of a container (`where` names the container)."""
    out = []
    for m in tar.getmembers():
        if not m.isfile() or not is_secret_name(Path(m.name).name):
            continue
        f = tar.extractfile(m)
        if f is not None and (found := needles(f.read())):
            out.append(Secret(f"{where}:{m.name}", found))
    return out


def leaks(log_text: str, secrets: Iterable[Secret]) -> list[str]:
    """The secrets (by where they are kept) of which some needle appears in `log_text`."""
    return [s.where for s in secrets if any(n in log_text for n in s.needles)]
