"""Many long-poll waiters in one process: `python -m tests.e2e.crl_waiters URL ETAG COUNT WAIT DEADLINE OUT`.

Opens COUNT plain TCP connections to the publisher at URL (http://host:port), sends on each a
`GET /crl` with `If-None-Match: ETAG` and `Prefer: wait=WAIT`, prints `sent` on stdout once
every request is written, then reads every answer (or gives up DEADLINE seconds after start)
and writes one JSON document to the file OUT: per connection the status, the ETag, the SHA-256 of the body,
the CLOCK_MONOTONIC time the answer was complete (comparable across processes on one
machine), or the error. Raw asyncio streams rather than an HTTP client library: the load
generator should cost less than the server it measures.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

CONNECT_BATCH = 100  # connects in flight at once: well under the listen backlog


async def one(host: str, port: int, etag: str, wait: int, opened: asyncio.Queue[None]) -> dict[str, Any]:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as e:
        await opened.put(None)
        return {"error": f"connect: {e}"}
    sent = False
    try:
        writer.write(
            f"GET /crl HTTP/1.1\r\nHost: {host}:{port}\r\nIf-None-Match: {etag}\r\nPrefer: wait={wait}\r\n\r\n".encode()
        )
        await writer.drain()
        sent = True
        await opened.put(None)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return {
            "status": status,
            "etag": headers.get("etag"),
            "sha256": hashlib.sha256(body).hexdigest(),
            "at": time.monotonic(),
        }
    except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as e:
        return {"error": f"{type(e).__name__}: {e}"}
    finally:
        if not sent:
            await opened.put(None)
        writer.close()


async def run(url: str, etag: str, count: int, wait: int, deadline: float) -> list[dict[str, Any]]:
    host, _, port = url.removeprefix("http://").partition(":")
    opened: asyncio.Queue[None] = asyncio.Queue()
    tasks: list[asyncio.Task[dict[str, Any]]] = []
    for start in range(0, count, CONNECT_BATCH):
        batch = [
            asyncio.create_task(one(host, int(port), etag, wait, opened))
            for _ in range(min(CONNECT_BATCH, count - start))
        ]
        tasks += batch
        for _ in batch:
            await opened.get()
    print("sent", flush=True)
    done, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
    for t in pending:
        t.cancel()
    return [t.result() if t in done else {"error": "no answer before the deadline"} for t in tasks]


def main() -> None:
    url, etag, count, wait, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    out = Path(sys.argv[6])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 64), hard))
    results = asyncio.run(run(url, etag, count, wait, time.monotonic() + seconds))
    out.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
