"""The publisher's HTTP API: the current CRL as DER and PEM, with ETag and Cache-Control.

    GET /crl       application/pkix-crl (DER, RFC 5280 4.2.1.13 / RFC 2585)
    GET /crl.pem   application/x-pem-file
                   both: with `If-None-Match: <current ETag>` and `Prefer: wait=N` the request is
                   held until a new CRL is loaded (200) or N seconds pass (304); zt.crl.longpoll
    GET /healthz   200 while a CRL is served and not past nextUpdate, else 503
    GET /metrics   Prometheus text

Nothing else: no /docs, /redoc or /openapi.json, no trailing-slash redirects (their Location
would be built from the client's Host header); any other path is 404 and any other method 405,
as JSON {error, reason} like every error here.

Caches may keep the CRL for `max_age` seconds but never past nextUpdate; plain HTTP is the
norm for CRLs (RFC 5280 8: they are signed, and HTTPS for them would be circular). A CRL file
that is refused (see zt.crl.source) never replaces the one being served.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator
from email.utils import format_datetime
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    generate_latest,
)
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from zt import __version__
from zt.clock import Clock, SystemClock, rfc3339
from zt.crl.longpoll import DEFAULT_MAX_WAIT, WATCH_INTERVAL, CrlGenerations, entity_tags, requested_wait, watch
from zt.crl.source import CrlSnapshot, CrlSource

log = logging.getLogger("zt.crl")
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def create_app(
    crl_der: Path,
    max_age: int = 5,
    clock: Clock | None = None,
    max_wait: int = DEFAULT_MAX_WAIT,
    watch_interval: float = WATCH_INTERVAL,
) -> FastAPI:
    """The app; `app.state.generations` is its long-poll state (zt.crl.main ends the waits
    at shutdown so a stop is not held up by waiting agents)."""
    clock = clock or SystemClock()
    # Only the series docs/metrics.md lists: not prometheus-client's `<name>_created` gauge
    # beside every counter (a process-wide switch; the publisher has no other registry).
    disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus-client
    registry = CollectorRegistry()
    refused = Counter(
        "zt_crl_refused_total",
        "CRL files refused (unreadable, not a CRL, no CRL number or nextUpdate); the last good one is served instead",
        registry=registry,
    )
    source = CrlSource(crl_der, on_refused=refused.inc)
    served = Counter("zt_crl_requests_total", "CRL requests", ["format", "code"], registry=registry)
    number = Gauge("zt_crl_number", "CRL number being served", registry=registry)
    next_update = Gauge("zt_crl_next_update_seconds", "nextUpdate of the served CRL, Unix time", registry=registry)
    entries = Gauge("zt_crl_entries", "revoked serials in the served CRL", registry=registry)
    generations = CrlGenerations()
    waiters = Gauge("zt_crl_longpoll_waiters", "CRL requests being held (long-poll) right now", registry=registry)
    waiters.set_function(lambda: generations.waiting)
    held = Counter(
        "zt_crl_longpoll_total",
        "held CRL requests by how they ended: changed (200, a new CRL), timeout (304), disconnected",
        ["outcome"],
        registry=registry,
    )
    for outcome in ("changed", "timeout", "disconnected"):
        held.labels(outcome)

    async def read() -> CrlSnapshot | None:
        return await run_in_threadpool(current)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        watcher = asyncio.create_task(watch(source, read, generations, watch_interval), name="crl-watcher")
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    app = FastAPI(
        title="zt CRL publisher",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        redirect_slashes=False,
        description="Serves the intermediate CA's current CRL.",
        lifespan=lifespan,
    )
    app.state.generations = generations

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        return JSONResponse(
            {"error": code, "reason": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", extra={"event": "internal_error", "fields": {}})
        return JSONResponse(
            {"error": "internal", "reason": "internal error; the publisher's log has the details"}, status_code=500
        )

    def unavailable() -> JSONResponse:
        return JSONResponse(
            {"error": "unavailable", "reason": source.problem or "no CRL is being served"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    def current() -> CrlSnapshot | None:
        snap = source.current()
        if snap is not None:
            number.set(snap.number)
            entries.set(snap.entries)
            next_update.set(snap.next_update.timestamp())
        return snap

    def respond(snap: CrlSnapshot, fmt: str, status: int, extra: dict[str, str]) -> Response:
        served.labels(fmt, str(status)).inc()
        headers = {**_cache_headers(snap, clock.now(), max_age), **extra}
        if status == 304:
            return Response(status_code=304, headers=headers)
        if fmt == "der":
            return Response(snap.der, media_type="application/pkix-crl", headers=headers)
        return Response(snap.pem, media_type="application/x-pem-file", headers=headers)

    async def serve(request: Request, fmt: str) -> Response:
        snap = await read()
        generations.observe(snap)
        if snap is None:
            served.labels(fmt, "503").inc()
            return unavailable()
        tags = entity_tags(request.headers.get("if-none-match"))
        if snap.etag not in tags and "*" not in tags:
            return respond(snap, fmt, 200, {})
        wait = min(requested_wait(request.headers.getlist("prefer")) or 0, max_wait)
        if wait <= 0 or snap.etag not in tags:  # `*` alone: any CRL matches, nothing to wait for
            return respond(snap, fmt, 304, {})
        result = await generations.wait_for_change(snap.etag, wait, lambda: _disconnect(request))
        applied = {"Preference-Applied": f"wait={wait}"}
        if result.snapshot is not None:
            held.labels("changed").inc()
            return respond(result.snapshot, fmt, 200, applied)
        held.labels("disconnected" if result.disconnected else "timeout").inc()
        return respond(generations.snapshot or snap, fmt, 304, applied)

    @app.get("/crl", summary="the current CRL, DER", response_class=Response)
    async def crl_der_route(request: Request) -> Response:
        return await serve(request, "der")

    @app.get("/crl.pem", summary="the current CRL, PEM", response_class=Response)
    async def crl_pem_route(request: Request) -> Response:
        return await serve(request, "pem")

    @app.get("/healthz", summary="200 while a current CRL is served")
    def healthz() -> JSONResponse:
        """ok (200); degraded (200: the file on disk was refused, the last good CRL is served and
        `problem` says why); stale (503: past nextUpdate); unavailable (503: nothing good to serve)."""
        snap = current()
        problem = source.problem
        if snap is None:
            return JSONResponse(
                {"status": "unavailable", "error": "unavailable", "reason": problem or "no CRL is being served"},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        stale = clock.now() >= snap.next_update
        body: dict[str, object] = {
            "status": "stale" if stale else "degraded" if problem else "ok",
            "crl_number": snap.number,
            "entries": snap.entries,
            "next_update": rfc3339(snap.next_update),
        }
        if problem:
            body["problem"] = problem
        return JSONResponse(body, status_code=503 if stale else 200)

    @app.get("/metrics")
    def metrics() -> Response:
        current()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


async def _disconnect(request: Request) -> None:
    """Return when the client has closed its connection (ASGI `http.disconnect`).

    A GET has no body, so the first message is an empty `http.request`; after it the server
    sends nothing until the connection is gone.
    """
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _cache_headers(snap: CrlSnapshot, now: dt.datetime, max_age: int) -> dict[str, str]:
    left = int((snap.next_update - now).total_seconds())
    age = max(0, min(max_age, left))  # never cacheable past nextUpdate
    return {
        "ETag": snap.etag,
        "Cache-Control": f"public, max-age={age}, must-revalidate",
        "Last-Modified": format_datetime(snap.this_update, usegmt=True),
        "Expires": format_datetime(snap.next_update, usegmt=True),
    }
