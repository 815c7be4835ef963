"""Long-poll for the CRL: a conditional GET that the publisher holds until the CRL changes.

An agent that already has the current CRL sends `If-None-Match: <its ETag>` and
`Prefer: wait=N` (RFC 7240 4.3). Instead of answering 304 at once, the publisher holds the
request until a new CRL is on disk (then answers 200 with it) or N seconds pass (then 304),
and says `Preference-Applied: wait=N` (RFC 7240 3) with the N it used (capped by
`--max-wait`). A revocation then reaches every waiting agent within one watch interval of the
new file, while an agent at rest sends one request per N seconds instead of polling often.

Cost at rest: one watcher task per process stats `crl.der` every `WATCH_INTERVAL` (the CA
side replaces it by rename, so a changed inode, mtime or size is a new CRL; see
zt.crl.source), and each held request is one coroutine awaiting one future shared by all
waiters of the current CRL generation (plus one task per waiter that notices a client leaving):
no thread per waiter. When a new CRL is loaded, that generation's future is resolved (waking
every waiter at once) and the next waiter makes a fresh one. A shared future rather than an
`asyncio.Event`: `Event.wait()` would be one more task per waiter to create and to wake.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from zt.crl.source import CrlSnapshot, CrlSource

log = logging.getLogger("zt.crl")

# 100 ms: a new CRL reaches the waiters within ~0.1 s of its rename, and ten stat(2) calls a
# second cost nothing measurable (docs/crl-publisher.md, "What it costs").
WATCH_INTERVAL = 0.1
DEFAULT_MAX_WAIT = 60


def requested_wait(prefer_headers: Iterable[str]) -> int | None:
    """The `wait` preference of a request's Prefer header(s), in seconds, or None.

    RFC 7240 2: preferences are comma-separated `token [= value] *(; parameter)`, names are
    case-insensitive, a preference given twice counts only the first time, and a preference
    that cannot be understood is ignored (so a malformed `wait` means no wait, never an error).
    `wait` is delta-seconds (4.3): a non-negative integer, optionally quoted.
    """
    for header in prefer_headers:
        for item in header.split(","):
            name, _, value = item.split(";", 1)[0].partition("=")
            if name.strip().lower() != "wait":
                continue
            value = value.strip().strip('"')
            return int(value) if value.isascii() and value.isdigit() else None
    return None


def entity_tags(if_none_match: str | None) -> list[str]:
    """The entity tags of an If-None-Match header (RFC 9110 13.1.2: `*` or a list, compared
    weakly, so a `W/` prefix is dropped); empty when there is no header."""
    if if_none_match is None:
        return []
    return [t.strip().removeprefix("W/") for t in if_none_match.split(",") if t.strip()]


@dataclass(frozen=True)
class Held:
    """How a held request ended: `snapshot` is the new CRL (None: the wait passed, or the
    client went away, which `disconnected` says)."""

    snapshot: CrlSnapshot | None
    disconnected: bool = False


class CrlGenerations:
    """The newest CRL snapshot this process has seen, and a future per generation of it.

    Everything here runs on the event loop; `observe` is called by the watcher and by every
    request that read the file, so whichever sees a new CRL first wakes the waiters. A snapshot
    counts as newer only by the source's load order (`CrlSnapshot.generation`), so a request
    that read the file before another cannot move the published generation back.
    """

    def __init__(self) -> None:
        self._snapshot: CrlSnapshot | None = None
        self._changed: asyncio.Future[None] | None = None
        self._closing = False
        self.waiting = 0

    @property
    def snapshot(self) -> CrlSnapshot | None:
        return self._snapshot

    def observe(self, snap: CrlSnapshot | None) -> None:
        if snap is None or (self._snapshot is not None and snap.generation <= self._snapshot.generation):
            return
        changed = self._snapshot is not None and snap.etag != self._snapshot.etag
        self._snapshot = snap
        if changed:
            self._wake_all()

    def release(self) -> None:
        """End every wait now and hold no more requests (the server is shutting down: the
        waiters get their 304 at once instead of holding the stop up for `--max-wait`)."""
        self._closing = True
        self._wake_all()

    def _wake_all(self) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        self._changed = None

    def _next_change(self) -> asyncio.Future[None]:
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        return self._changed

    async def wait_for_change(
        self, etag: str, timeout: float, disconnected: Callable[[], Awaitable[None]] | None = None
    ) -> Held:
        """Wait until the newest CRL's ETag is not `etag`, `timeout` passes, or `disconnected`
        returns (the client closed its connection: the wait ends then, not at the timeout)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        gone = asyncio.ensure_future(disconnected()) if disconnected is not None else None
        self.waiting += 1
        try:
            while True:
                snap = self._snapshot
                if snap is not None and snap.etag != etag:
                    return Held(snap)
                left = deadline - loop.time()
                if left <= 0 or self._closing:
                    return Held(None)
                changed = self._next_change()  # shared: asyncio.wait never cancels what it waits on
                pending = {changed, gone} if gone is not None else {changed}
                done, _ = await asyncio.wait(pending, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                if gone is not None and gone in done:
                    return Held(None, disconnected=True)
        finally:
            self.waiting -= 1
            if gone is not None:
                gone.cancel()  # not awaited: one loop step less per waiter, and it only reads


async def watch(
    source: CrlSource,
    read: Callable[[], Awaitable[CrlSnapshot | None]],
    generations: CrlGenerations,
    interval: float,
) -> None:
    """The one watcher: every `interval`, publish the source's newest CRL if it has one.

    Each tick is one stat(2) on the event loop; the file is read (in the thread pool, by `read`)
    only when it changed on disk, or when another reader (/healthz, /metrics) loaded a CRL the
    waiters have not been given, so a tick costs no thread hand-off. Measured at rest on the
    shared lab machine, an idle publisher with this watcher and one without it both used 1.5 to
    3% of a core (uvicorn's own 100 ms tick included), the difference within the noise.
    A failure is logged and the loop goes on (the file is re-read at the next tick); the loop
    ends only when its task is cancelled at shutdown.
    """
    while True:
        try:
            published = generations.snapshot.generation if generations.snapshot else 0
            if source.needs_reload() or source.loads != published:
                generations.observe(await read())
        except Exception:  # a long-running loop logs, and goes on
            log.exception("CRL watcher failed", extra={"event": "crl_watch_failed", "fields": {}})
        await asyncio.sleep(interval)
