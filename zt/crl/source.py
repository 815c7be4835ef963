"""The published CRL file, re-read only when it changed on disk, and checked before it is served.

The CA side replaces `crl.der` with rename(2), so a changed (inode, mtime, size) means a new
CRL; reading it whole and parsing it once per change keeps each request to one stat(2).

A reload is all-or-nothing: a file that is unreadable, not a DER CRL, or without the fields
relying parties act on (the CRL number, RFC 5280 5.2.3, which orders CRLs; nextUpdate, 5.1.2.5,
which bounds caching) is refused, and the last good CRL keeps being served. `problem` says why
the file on disk is not the one served, for /healthz and the log.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from zt.clock import rfc3339
from zt.logjson import log_event
from zt.pki.crls import crl_number

log = logging.getLogger("zt.crl")


@dataclass(frozen=True)
class CrlSnapshot:
    der: bytes
    pem: bytes
    etag: str
    number: int
    this_update: dt.datetime
    next_update: dt.datetime
    entries: int
    # The how-many-th CRL this process loaded (1, 2, ...): orders snapshots read by concurrent
    # requests, so the newest one wins even when an older read finishes last (zt.crl.longpoll).
    generation: int = 0


class CrlRefused(ValueError):
    """The file on disk is not a CRL this publisher will serve; the message says why."""


def parse_crl(der: bytes) -> CrlSnapshot:
    """A snapshot of a DER CRL that has what relying parties need, or CrlRefused."""
    try:
        crl = x509.load_der_x509_crl(der)
    except ValueError as e:
        raise CrlRefused(f"not a DER CRL: {e}") from e
    try:
        number = crl_number(crl)
    except x509.ExtensionNotFound as e:
        raise CrlRefused("it has no CRL number extension (RFC 5280 5.2.3 requires one)") from e
    next_update = crl.next_update_utc
    if next_update is None:
        raise CrlRefused("it has no nextUpdate (RFC 5280 5.1.2.5 requires one)")
    return CrlSnapshot(
        der=der,
        pem=crl.public_bytes(serialization.Encoding.PEM),
        etag='"' + hashlib.sha256(der).hexdigest()[:32] + '"',
        number=number,
        this_update=crl.last_update_utc,
        next_update=next_update,
        entries=len(crl),
    )


class CrlSource:
    def __init__(self, der_path: Path, on_refused: Callable[[], None] | None = None) -> None:
        self.path = Path(der_path)
        self._on_refused = on_refused
        self._lock = threading.Lock()
        self._key: tuple[int, int, int] | None = None
        self._snapshot: CrlSnapshot | None = None
        self._problem: str | None = "no CRL has been published yet"
        self._loads = 0

    def current(self) -> CrlSnapshot | None:
        """The last good CRL (re-reading the file if it changed), or None when there never was one."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            with self._lock:
                self._key = None
                self._problem = "no CRL has been published yet" if self._snapshot is None else f"{self.path} is missing"
                return self._snapshot
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            if key != self._key:
                self._key = key
                self._reload()
            return self._snapshot

    def needs_reload(self) -> bool:
        """Whether `current()` would re-read the file: one stat(2), no lock, no parsing.

        For the long-poll watcher, which asks ten times a second on the event loop and goes to
        the thread pool (where a reload may parse a large CRL) only when this says so.
        """
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return self._key is not None
        return (st.st_ino, st.st_mtime_ns, st.st_size) != self._key

    @property
    def loads(self) -> int:
        """How many CRLs this source has loaded: the generation of the newest snapshot."""
        return self._loads

    @property
    def problem(self) -> str | None:
        """Why the file on disk is not being served (None when it is)."""
        with self._lock:
            return self._problem

    def _reload(self) -> None:
        try:
            snap = parse_crl(self.path.read_bytes())
        except (OSError, CrlRefused) as e:
            if self._on_refused is not None:
                self._on_refused()
            self._problem = f"{self.path} was refused: {e}"
            log_event(
                log,
                "crl_refused",
                logging.ERROR,
                path=str(self.path),
                reason=str(e),
                serving=self._snapshot.number if self._snapshot else None,
            )
            return
        self._loads += 1
        self._snapshot = snap = dataclasses.replace(snap, generation=self._loads)
        self._problem = None
        log_event(
            log,
            "crl_loaded",
            path=str(self.path),
            crl_number=snap.number,
            entries=snap.entries,
            next_update=rfc3339(snap.next_update),
        )
