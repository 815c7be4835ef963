"""Every CRL the publisher served during a run, kept by CRL number, for the validators.

A thread asks the publisher for `/crl` with `If-None-Match` at a short interval and keeps the
DER of each new CRL number it sees, with when it saw it. That is the evidence for "every CRL
the run produced passes pkilint and `openssl crl -verify`" (zt.lab.crl_lint), and a timeline of
what relying parties could fetch: a CRL the RA re-issued while the publisher was stopped,
and replaced before it came back, was never served to anyone, so it is not collected.

The watcher outlives a stopped publisher (a refused connection is counted, not fatal), and
asks the lab for the publisher's address at every request: the container runtime may
publish a restarted publisher on another host port.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography import x509


@dataclass(frozen=True)
class SeenCrl:
    number: int
    der: bytes
    seen_at: float  # when the watcher first fetched it (Unix time)
    this_update: float
    next_update: float
    entries: int


class CrlWatcher:
    """Collects the publisher's CRLs in a daemon thread; `stop()` ends it (bounded by `interval`)."""

    def __init__(self, crl_url: Callable[[], str], interval: float = 0.5, timeout: float = 10.0) -> None:
        self._crl_url = crl_url
        self._interval = interval
        self._timeout = timeout
        self._seen: dict[int, SeenCrl] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="crl-watch", daemon=True)
        self.errors = 0  # fetches that failed (publisher stopped, timeout): counted, not fatal
        self.last_error = ""

    def start(self) -> CrlWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._timeout + 5)

    def crls(self) -> list[SeenCrl]:
        with self._lock:
            return [self._seen[n] for n in sorted(self._seen)]

    def newest(self) -> SeenCrl | None:
        crls = self.crls()
        return crls[-1] if crls else None

    def wait_for(self, what: str, check: Callable[[SeenCrl], bool], timeout: float) -> SeenCrl:
        """The first collected CRL (newest first) that satisfies `check`, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            for c in reversed(self.crls()):
                if check(c):
                    return c
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"no CRL served {what} within {timeout:g}s (newest: {self.newest()}, last error: {self.last_error})"
                )
            time.sleep(0.2)

    def save(self, directory: Path) -> list[Path]:
        """Each CRL as crl-<number>.der in `directory` (evidence for the report)."""
        directory.mkdir(parents=True, exist_ok=True)
        out = []
        for c in self.crls():
            p = directory / f"crl-{c.number}.der"
            p.write_bytes(c.der)
            out.append(p)
        return out

    def _run(self) -> None:
        etag: str | None = None
        with httpx.Client(timeout=self._timeout, trust_env=False) as http:
            while not self._stop.is_set():
                try:
                    headers = {"If-None-Match": etag} if etag else {}
                    r = http.get(self._crl_url() + "/crl", headers=headers)
                    if r.status_code == 200:
                        self._keep(r.content)
                        etag = r.headers.get("ETag")
                    elif r.status_code != 304:
                        self._failed(f"HTTP {r.status_code}")
                except Exception as e:  # noqa: BLE001 - a stopped publisher is part of the scenario
                    self._failed(f"{type(e).__name__}: {e}")
                self._stop.wait(self._interval)

    def _failed(self, why: str) -> None:
        self.errors += 1
        self.last_error = why

    def _keep(self, der: bytes) -> None:
        try:
            crl = x509.load_der_x509_crl(der)
            number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number  # RFC 5280 5.2.3
        except (ValueError, x509.ExtensionNotFound) as e:
            self._failed(f"not a CRL with a number: {e}")
            return
        next_update = crl.next_update_utc
        with self._lock:
            if number not in self._seen:
                self._seen[number] = SeenCrl(
                    number,
                    der,
                    time.time(),
                    crl.last_update_utc.timestamp(),
                    next_update.timestamp() if next_update else 0.0,
                    len(crl),
                )
