"""The publisher's HTTP API: the current CRL as DER and PEM, with ETag and Cache-Control.

    GET /crl       application/pkix-crl (DER, RFC 5280 4.2.1.13 / RFC 2585)
    GET /crl.pem   application/x-pem-file
    GET /healthz   200 while a CRL is served and not past nextUpdate, else 503
    GET /metrics   Prometheus text

Caches may keep the CRL for `max_age` seconds but never past nextUpdate; plain HTTP is the
norm for CRLs (RFC 5280 8: they are signed, and HTTPS for them would be circular).
"""

from __future__ import annotations

import datetime as dt
from email.utils import format_datetime
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from zt import __version__
from zt.clock import Clock, SystemClock, rfc3339
from zt.crl.source import CrlSnapshot, CrlSource


def create_app(crl_der: Path, max_age: int = 5, clock: Clock | None = None) -> FastAPI:
    clock = clock or SystemClock()
    source = CrlSource(crl_der)
    registry = CollectorRegistry()
    served = Counter("zt_crl_requests_total", "CRL requests", ["format", "code"], registry=registry)
    number = Gauge("zt_crl_number", "CRL number being served", registry=registry)
    next_update = Gauge("zt_crl_next_update_seconds", "nextUpdate of the served CRL, Unix time", registry=registry)
    entries = Gauge("zt_crl_entries", "revoked serials in the served CRL", registry=registry)
    app = FastAPI(title="zt CRL publisher", version=__version__,
                  description="Serves the intermediate CA's current CRL.")

    def unavailable() -> JSONResponse:
        return JSONResponse({"error": "unavailable", "reason": "no CRL has been published yet"}, status_code=503,
                            headers={"Retry-After": "1"})

    def serve(request: Request, fmt: str) -> Response:
        snap = source.current()
        if snap is None:
            served.labels(fmt, "503").inc()
            return unavailable()
        number.set(snap.number)
        entries.set(snap.entries)
        if snap.next_update:
            next_update.set(snap.next_update.timestamp())
        headers = _cache_headers(snap, clock.now(), max_age)
        if request.headers.get("if-none-match") in (snap.etag, "*"):
            served.labels(fmt, "304").inc()
            return Response(status_code=304, headers=headers)
        served.labels(fmt, "200").inc()
        if fmt == "der":
            return Response(snap.der, media_type="application/pkix-crl", headers=headers)
        return Response(snap.pem, media_type="application/x-pem-file", headers=headers)

    @app.get("/crl", summary="the current CRL, DER", response_class=Response)
    def crl_der_route(request: Request) -> Response:
        return serve(request, "der")

    @app.get("/crl.pem", summary="the current CRL, PEM", response_class=Response)
    def crl_pem_route(request: Request) -> Response:
        return serve(request, "pem")

    @app.get("/healthz", summary="200 while a current CRL is served")
    def healthz() -> JSONResponse:
        snap = source.current()
        if snap is None:
            return unavailable()
        stale = snap.next_update is not None and clock.now() >= snap.next_update
        body = {"status": "stale" if stale else "ok", "crl_number": snap.number, "entries": snap.entries,
                "next_update": rfc3339(snap.next_update) if snap.next_update else None}
        return JSONResponse(body, status_code=503 if stale else 200)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _cache_headers(snap: CrlSnapshot, now: dt.datetime, max_age: int) -> dict[str, str]:
    left = int((snap.next_update - now).total_seconds()) if snap.next_update else max_age
    age = max(0, min(max_age, left))  # never cacheable past nextUpdate
    headers = {"ETag": snap.etag, "Cache-Control": f"public, max-age={age}, must-revalidate",
               "Last-Modified": format_datetime(snap.this_update, usegmt=True)}
    if snap.next_update:
        headers["Expires"] = format_datetime(snap.next_update, usegmt=True)
    return headers
