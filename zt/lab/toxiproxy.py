"""Toxiproxy: the lab's fault injector, a real TCP proxy on every edge of a chaos lab.

Toxiproxy (github.com/Shopify/toxiproxy, pinned v2.5.0, built by scripts/install-deps.sh into
`.tools/bin/toxiproxy-server`) is a Go server: one listener per *proxy*, each forwarding to one
upstream, and *toxics* on a proxy that delay, cut, slice or throttle the bytes. The lab's
components are pointed at the proxies' listeners instead of at each other, so mTLS passes
through untouched (toxiproxy sees TCP, never TLS): every certificate still verifies against
its IP SAN 127.0.0.1, because the proxy listens on 127.0.0.1 too.

The client here is a small typed one over toxiproxy's HTTP API (`/proxies`,
`/proxies/{name}`, `/proxies/{name}/toxics`, `/reset`, `/version`), on httpx like the rest of
the lab. Why not `toxiproxy-python` (PyPI), the client the design names: its last release,
0.1.1, is from January 2019 (unmaintained for years, written for toxiproxy 2.1), it has no type
hints (the lab is mypy-strict), it wraps every error in its own exception types without the
server's message, and it adds `requests` as a second HTTP stack next to httpx. Toxics are
uniform in the API (a type, a stream and a dict of attributes), so a client that covers
latency+jitter, timeout, reset_peer, bandwidth, slicer and "down" (a disabled proxy) in full
is about a hundred lines, and it says what toxiproxy answered when something is refused.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from zt.errors import ZtError
from zt.lab import process

REPO = Path(__file__).resolve().parents[2]
# Where scripts/install-deps.sh puts the pinned server (`go install ...@v2.5.0`).
SERVER = REPO / ".tools" / "bin" / "toxiproxy-server"
VERSION = "2.5.0"

Stream = Literal["upstream", "downstream"]  # client->server bytes, server->client bytes


class ToxiproxyError(ZtError):
    """Toxiproxy refused a request, or cannot be reached: what was asked and what it said."""


@dataclass(frozen=True)
class Toxic:
    """One toxic as toxiproxy takes it: `type` is latency, timeout, reset_peer, bandwidth,
    slicer, slow_close or limit_data; `attributes` are that type's (all in ms, KB/s or bytes,
    as toxiproxy's README lists them)."""

    name: str
    type: str
    stream: Stream = "downstream"
    toxicity: float = 1.0
    attributes: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
        }


class Toxiproxy:
    """A typed client of one toxiproxy server's HTTP API (loopback only)."""

    def __init__(self, api_url: str, timeout: float = 5.0) -> None:
        self.api_url = api_url.rstrip("/")
        self._http = httpx.Client(base_url=self.api_url, timeout=timeout, trust_env=False)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            r = self._http.request(method, path, json=body)
        except httpx.HTTPError as e:
            raise ToxiproxyError(f"toxiproxy {method} {path}: {type(e).__name__}: {e}") from e
        if r.status_code >= 300:
            raise ToxiproxyError(f"toxiproxy {method} {path}: HTTP {r.status_code}: {r.text.strip()[:300]}")
        return r.json() if r.content else None

    def version(self) -> str:
        try:
            r = self._http.get("/version")
        except httpx.HTTPError as e:
            raise ToxiproxyError(f"toxiproxy /version: {type(e).__name__}: {e}") from e
        return r.text.strip()

    def create_proxy(self, name: str, listen: str, upstream: str) -> None:
        """A proxy listening on `listen` (127.0.0.1:PORT) forwarding to `upstream`; the upstream
        need not be listening yet (toxiproxy connects per accepted connection)."""
        self._call("POST", "/proxies", {"name": name, "listen": listen, "upstream": upstream, "enabled": True})

    def proxies(self) -> dict[str, Any]:
        doc = self._call("GET", "/proxies")
        return doc if isinstance(doc, dict) else {}

    def set_enabled(self, name: str, enabled: bool) -> None:
        """A disabled proxy closes its listener and every open connection: the edge is down."""
        self._call("POST", f"/proxies/{name}", {"enabled": enabled})

    def add_toxic(self, proxy: str, toxic: Toxic) -> None:
        self._call("POST", f"/proxies/{proxy}/toxics", toxic.to_json())

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._call("DELETE", f"/proxies/{proxy}/toxics/{name}")

    def toxics(self, proxy: str) -> list[dict[str, Any]]:
        doc = self._call("GET", f"/proxies/{proxy}/toxics")
        return doc if isinstance(doc, list) else []

    def reset(self) -> None:
        """Every proxy enabled, every toxic removed."""
        self._call("POST", "/reset")


def server_binary() -> Path:
    """The pinned server, or a LabError-like message saying how to build it."""
    if SERVER.exists():
        return SERVER
    found = shutil.which("toxiproxy-server")
    if found:
        return Path(found)
    raise ToxiproxyError(
        f"{SERVER} is missing: build it with scripts/install-deps.sh (go install toxiproxy v{VERSION})"
    )


def start_server(port: int, log: Path, seed: int, cwd: Path) -> tuple[process.Proc, Toxiproxy]:
    """toxiproxy-server on 127.0.0.1:`port`, its randomness (jitter, toxicity) seeded; ready
    when /version answers."""
    argv = [str(server_binary()), "-host", "127.0.0.1", "-port", str(port), "-seed", str(seed)]
    proc = process.start("toxiproxy", argv, log, cwd=cwd)
    client = Toxiproxy(f"http://127.0.0.1:{port}")
    try:
        process.wait_until("toxiproxy /version", lambda: bool(client.version()), timeout=30, proc=proc)
    except BaseException:
        proc.stop()
        client.close()
        raise
    return proc, client
