"""The published CRL file, re-read only when it changed on disk.

The CA side replaces `crl.der` with rename(2), so a changed (inode, mtime, size) means a new
CRL; reading it whole and parsing it once per change keeps each request to one stat(2).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from zt.pki.crls import crl_number


@dataclass(frozen=True)
class CrlSnapshot:
    der: bytes
    pem: bytes
    etag: str
    number: int
    this_update: dt.datetime
    next_update: dt.datetime | None
    entries: int


class CrlSource:
    def __init__(self, der_path: Path) -> None:
        self.path = Path(der_path)
        self._lock = threading.Lock()
        self._key: tuple[int, int, int] | None = None
        self._snapshot: CrlSnapshot | None = None

    def current(self) -> CrlSnapshot | None:
        """The CRL as it is on disk now, or None when there is none (yet) or it is unreadable."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            if key != self._key:
                self._snapshot = self._load()
                self._key = key
            return self._snapshot

    def _load(self) -> CrlSnapshot | None:
        try:
            der = self.path.read_bytes()
            crl = x509.load_der_x509_crl(der)
        except (OSError, ValueError):
            return None
        return CrlSnapshot(
            der=der, pem=crl.public_bytes(serialization.Encoding.PEM),
            etag='"' + hashlib.sha256(der).hexdigest()[:32] + '"', number=crl_number(crl),
            this_update=crl.last_update_utc, next_update=crl.next_update_utc, entries=len(list(crl)),
        )
