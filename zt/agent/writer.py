"""The atomic writer of a certificate directory (the contract in docs/contracts.md, section 2).

Files that belong together change together, as in Kubernetes' AtomicWriter: each identity
generation is written whole into a new `gen-*` directory, then a relative symlink `current`
is swapped to it with one rename(2). A reader that resolves `current` once and reads every
file from there can never see a new certificate next to an old key. The last few generations
are kept so a reader that resolved `current` just before a swap can still open its files.

Each generation also carries `bundle.pem.sha256` (sha256sum format) of the `bundle.pem` beside
it, so a service can tell a bundle that was edited after the agent wrote it (CONTRACT B): the
agent verified what it wrote against its pinned bundle, and the checksum carries that
decision to the reader, who checks `bundle.pem` against it before trusting it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from zt.agent.material import Material
from zt.clock import rfc3339
from zt.errors import CaError
from zt.fsutil import PUBLIC_MODE, SECRET_MODE, fsync_dir, write_atomic, write_new
from zt.pki.encoding import key_pem, load_certs, load_private_key, pem

CURRENT = "current"
BUNDLE_SHA256 = "bundle.pem.sha256"
KEEP_GENERATIONS = 3
KEYSTORE_ALIAS = b"identity"
LINKED_FILES = (
    "key.pem",
    "cert.pem",
    "chain.pem",
    "bundle.pem",
    BUNDLE_SHA256,
    "keystore.p12",
    "truststore.p12",
    "keystore.pass",
    "svid.json",
)


def bundle_checksum_line(bundle_pem: bytes) -> bytes:
    """`<sha256 hex>  bundle.pem\n`: what `sha256sum bundle.pem` prints, so `sha256sum -c` checks it."""
    return f"{hashlib.sha256(bundle_pem).hexdigest()}  bundle.pem\n".encode()


def _generation_name(m: Material) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"gen-{stamp}-{m.serial[:8]}"


class CertDirWriter:
    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.swept = self.sweep_torn()

    def sweep_torn(self) -> list[str]:
        """Remove the generations a killed agent left half-written; their names.

        write() makes the directory first and svid.json last, and only then points `current`
        at it: a `gen-*` directory without svid.json that `current` does not name is a write
        that a SIGKILL (or a crash, or a full disk) cut short. No reader ever saw it, and kept,
        it would sit among the generations as a torn one until pruned (chaos plan 6b)."""
        try:
            current = os.readlink(self.out / CURRENT)
        except OSError:
            current = None
        swept = []
        with contextlib.suppress(FileNotFoundError):
            for p in sorted(self.out.iterdir()):
                torn = p.name.startswith("gen-") and p.is_dir() and not (p / "svid.json").exists()
                if torn and p.name != current and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                    swept.append(p.name)
        return swept

    def write(self, m: Material) -> str:
        """Write a new generation and make it current; return the generation's name."""
        self.out.mkdir(parents=True, exist_ok=True)
        gen = _generation_name(m)
        gdir = self.out / gen
        gdir.mkdir(mode=0o755)
        password = secrets.token_urlsafe(24)
        enc = serialization.BestAvailableEncryption(password.encode())
        chain_pem = b"".join(pem(c) for c in m.chain)
        bundle_pem = b"".join(pem(c) for c in m.bundle)
        files: list[tuple[str, bytes, int]] = [
            ("key.pem", key_pem(m.key), SECRET_MODE),
            ("cert.pem", pem(m.leaf), PUBLIC_MODE),
            ("chain.pem", chain_pem, PUBLIC_MODE),
            ("bundle.pem", bundle_pem, PUBLIC_MODE),
            (BUNDLE_SHA256, bundle_checksum_line(bundle_pem), PUBLIC_MODE),
            ("keystore.pass", password.encode(), SECRET_MODE),
            (
                "keystore.p12",
                pkcs12.serialize_key_and_certificates(KEYSTORE_ALIAS, m.key, m.leaf, list(m.intermediates), enc),  # type: ignore[arg-type]
                SECRET_MODE,
            ),
            (
                "truststore.p12",
                pkcs12.serialize_java_truststore(
                    [pkcs12.PKCS12Certificate(c, f"root-{i}".encode()) for i, c in enumerate(m.bundle)], enc
                ),
                PUBLIC_MODE,
            ),
            (
                "svid.json",
                (
                    json.dumps(
                        {
                            "spiffe_id": m.spiffe_id,
                            "serial": m.serial,
                            "not_before": rfc3339(m.not_before),
                            "not_after": rfc3339(m.not_after),
                            "generation": gen,
                        },
                        indent=2,
                    )
                    + "\n"
                ).encode(),
                PUBLIC_MODE,
            ),
        ]
        for name, data, mode in files:
            write_new(gdir / name, data, mode)
        fsync_dir(gdir)
        point_current(self.out, gen)
        self._prune()
        return gen

    def _prune(self) -> None:
        current = os.readlink(self.out / CURRENT)
        gens = sorted(p for p in self.out.iterdir() if p.name.startswith("gen-") and p.is_dir() and not p.is_symlink())
        for old in gens[:-KEEP_GENERATIONS]:
            if old.name != current:
                shutil.rmtree(old, ignore_errors=True)

    def write_crl(self, data: bytes) -> None:
        write_atomic(self.out / "crl.pem", data, PUBLIC_MODE)


def point_current(out: Path, gen: str) -> None:
    """Make generation `gen` current with one rename(2) of the `current` symlink, and make sure
    the convenience links (key.pem -> current/key.pem, ...) exist."""
    tmp = out / f".{CURRENT}.{secrets.token_hex(4)}.tmp"
    os.symlink(gen, tmp)
    os.replace(tmp, out / CURRENT)
    fsync_dir(out)
    for name in LINKED_FILES:
        link = out / name
        if not link.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            os.symlink(f"{CURRENT}/{name}", link)


def current_has_bundle_checksum(out: Path) -> bool:
    """Whether the current generation carries `bundle.pem.sha256` (older agents did not write it)."""
    return (Path(out) / CURRENT / BUNDLE_SHA256).is_file()


def read_current(out: Path) -> Material | None:
    """The reader's contract: resolve `current` once, read everything from that generation.

    None when there is no usable identity (nothing written yet, or files unreadable/mismatched).
    """
    link = Path(out) / CURRENT
    if not link.is_symlink():
        return None
    gdir = link.resolve()
    try:
        key = load_private_key((gdir / "key.pem").read_bytes(), "key.pem")
        chain = load_certs((gdir / "chain.pem").read_bytes(), "chain.pem")
        bundle = load_certs((gdir / "bundle.pem").read_bytes(), "bundle.pem")
        meta = json.loads((gdir / "svid.json").read_text())
    except (OSError, ValueError, CaError):
        return None
    if not chain or chain[0].public_key() != key.public_key():
        return None
    return Material(key, chain[0], tuple(chain[1:]), tuple(bundle), str(meta.get("spiffe_id", "")))
