"""One boundary that turns every failure into a JSON body with a reason and the right status.

The client gets `{"error": <code>, "reason": <text>}`; never a stack trace. Anything we did
not expect is a 500 with a generic reason, and its traceback goes to the RA's log only.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zt.clock import rfc3339
from zt.errors import CaError, InvalidValue, RateLimited, RequestRejected, StoreError
from zt.logjson import log_event
from zt.ra import metrics
from zt.ra.limits import retry_after_header
from zt.ra.ratelimit import RateLimiter, SourceTicket

log = logging.getLogger("zt.ra")

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}
# Refusals of a presented (or missing) credential that the audit log records, by code: the
# credential they refused (zt.ra.service.RegistrationAuthority.record_refusal).
REFUSED_CREDENTIALS = {
    "missing_token": "bootstrap_token",
    "unknown_token": "bootstrap_token",
    "used_token": "bootstrap_token",
    "expired_token": "bootstrap_token",
    "missing_credential": "admin_token",
    "invalid_credential": "admin_token",
}
# Fields whose range errors get the same code as the service's own range check.
# The schema's models check these first (docs: the RA's schema states what it enforces), with
# the codes the service's own checks used before, so clients see the same code either way.
# A string of the wrong shape gets the field's code; a value of the wrong type stays bad_request.
_FIELD_CODES = {"ttl_seconds": "bad_ttl", "token_ttl_seconds": "bad_ttl"}
_STRING_FIELD_CODES = {"service": "bad_service_name", "serial": "bad_serial", "csr": "malformed_csr"}


def error_body(code: str, reason: str) -> dict[str, str]:
    return {"error": code, "reason": reason}


def endpoint_of(request: Request) -> str:
    return endpoint_in(request.scope)


def endpoint_in(scope: Scope) -> str:
    """The route's path, or, before routing (a middleware's answer), the request path if it is
    one of the app's routes; anything else is "other" (no unbounded label values)."""
    route = scope.get("route")
    if route is not None:
        return str(getattr(route, "path", "other"))
    path = scope.get("path", "")
    app = scope.get("app")
    for r in getattr(app, "routes", ()):
        if getattr(r, "path", None) == path:
            return str(path)
    return "other"


def source_of(scope: Scope) -> str | None:
    """The TCP peer's address: what rate limits and lockouts are keyed by. Never a header
    (zt.ra.main turns uvicorn's proxy headers off)."""
    client = scope.get("client")
    return str(client[0]) if client else None


def too_many(exc: RateLimited) -> JSONResponse:
    """429 with `Retry-After` (whole seconds, rounded up) and the same number in the body."""
    seconds = retry_after_header(exc.retry_after)
    body: dict[str, Any] = {**error_body(exc.code, exc.reason), "retry_after": seconds}
    return JSONResponse(body, status_code=429, headers={"Retry-After": str(seconds)})


def install(app: FastAPI) -> None:
    @app.exception_handler(RateLimited)
    async def rate_limited(request: Request, exc: RateLimited) -> JSONResponse:
        # Logged where it was decided (`rate_limited` / `locked_out`, zt.ra.ratelimit and
        # zt.ra.lockout), with the fields only that place knows.
        metrics.REJECTED.labels(endpoint_of(request), exc.code).inc()
        return too_many(exc)

    @app.exception_handler(RequestRejected)
    async def rejected(request: Request, exc: RequestRejected) -> JSONResponse:
        metrics.REJECTED.labels(endpoint_of(request), exc.code).inc()
        log_event(
            log,
            "rejected",
            logging.INFO,
            endpoint=endpoint_of(request),
            status=exc.status,
            error=exc.code,
            reason=exc.reason,
            client=request.client.host if request.client else None,
        )
        await _audit_refusal(request, exc)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(error_body(exc.code, exc.reason), status_code=exc.status, headers=headers)

    @app.exception_handler(InvalidValue)
    async def invalid_value(request: Request, exc: InvalidValue) -> JSONResponse:
        metrics.REJECTED.labels(endpoint_of(request), "bad_request").inc()
        return JSONResponse(error_body("bad_request", str(exc)), status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        code = _FIELD_CODES.get(loc[-1], "bad_request") if loc else "bad_request"
        if loc and first.get("type") in ("string_too_short", "string_too_long", "string_pattern_mismatch"):
            code = _STRING_FIELD_CODES.get(loc[-1], code)
        if first.get("type") == "json_invalid":
            reason = "request body is not valid JSON"
        else:
            reason = f"{'.'.join(loc) or 'body'}: {first.get('msg', 'invalid')}"
        metrics.REJECTED.labels(endpoint_of(request), code).inc()
        return JSONResponse(error_body(code, reason), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        headers = dict(exc.headers or {})
        if exc.status_code == 413:
            headers["Connection"] = "close"  # the rest of the body is not read: end the connection
            metrics.REJECTED.labels(endpoint_of(request), code).inc()
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=headers)

    @app.exception_handler(CaError)
    async def ca_error(request: Request, exc: CaError) -> JSONResponse:
        return _ca_unavailable(request, exc)

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> JSONResponse:
        log_event(log, "store_error", logging.ERROR, reason=str(exc))
        return JSONResponse(
            error_body("unavailable", "the RA cannot reach its store; retry later"),
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", extra={"event": "internal_error", "fields": {}})
        return JSONResponse(error_body("internal", "internal error; the RA log has the details"), status_code=500)


async def _audit_refusal(request: Request, exc: RequestRejected) -> None:
    """Put a refused token in the audit log before the refusal is answered; a failure to
    record it is logged and the refusal still goes out (it refuses; it grants nothing)."""
    credential = REFUSED_CREDENTIALS.get(exc.code)
    ra = getattr(request.app.state, "ra", None)
    if credential is None or ra is None:
        return
    source = request.client.host if request.client else None
    try:
        await run_in_threadpool(ra.record_refusal, credential, exc.code, source, endpoint_of(request))
    except StoreError as e:
        log_event(log, "audit_failed", logging.ERROR, reason=str(e), error=exc.code)


def _ca_unavailable(request: Request, exc: CaError) -> JSONResponse:
    """The CA side cannot sign (an expired intermediate, unreadable CA files): not the client's
    fault and not the store's. The client gets a short reason, the log the whole cause (which
    may name files). No Retry-After: an operator has to act first."""
    log_event(log, "ca_error", logging.ERROR, endpoint=endpoint_of(request), reason=str(exc))
    metrics.REJECTED.labels(endpoint_of(request), "ca_unavailable").inc()
    reason = "the RA cannot sign: its CA material is unusable; the RA log has the cause"
    ra = getattr(request.app.state, "ra", None)
    if ra is not None and ra.clock.now() >= ra.authority.not_after:
        reason = f"the RA cannot sign: its intermediate CA expired at {rfc3339(ra.authority.not_after)}"
    return JSONResponse(error_body("ca_unavailable", reason), status_code=503)


class BodyTooLarge(StarletteHTTPException):
    """A streamed body went over the limit.

    Raised inside receive(), so it surfaces wherever the body is read. It must be an
    HTTPException: FastAPI's body parsing turns any other exception into 400 "There was an
    error parsing the body", and re-raises HTTPException to the handler above (413 JSON).
    """

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"request body is larger than {limit} bytes")


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413, declared (Content-Length, refused before
    reading) or streamed (chunked: refused at the first chunk over the limit). Either way the
    answer carries `Connection: close`, so the server stops reading the rest."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.limit or declared < 0:
                    await self._refuse(send, declared)
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return msg

        await self.app(scope, limited, send)

    async def _refuse(self, send: Send, declared: int) -> None:
        if declared < 0:
            status, body = 400, error_body("bad_request", "Content-Length is not a valid number")
        else:
            status, body = 413, error_body("payload_too_large", f"request body is larger than {self.limit} bytes")
        data = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})


# Where the per-source count is taken in the issuance transaction (zt.ra.service), and the
# request-state key that carries the SourceTicket to the route.
FOLDED_ENDPOINTS = frozenset({"/v1/issue", "/v1/renew"})
SOURCE_TICKET = "zt_source_ticket"


def source_ticket(request: Request) -> SourceTicket | None:
    ticket = request.scope.get("state", {}).get(SOURCE_TICKET)
    return ticket if isinstance(ticket, SourceTicket) else None


class SourceLimit:
    """Count every request against its source address (zt.ra.ratelimit) before anything else
    reads it; over the limit, answer 429 here."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        source = source_of(scope)
        if scope["type"] != "http" or source is None or not self.limiter.limits.source.enabled:
            await self.app(scope, receive, send)
            return
        endpoint = endpoint_in(scope)
        folded = endpoint in FOLDED_ENDPOINTS and scope.get("method") == "POST"
        try:
            if folded:
                # The check is a read, made here on the event loop: no thread hand-off per
                # issuance. Only a refusal, which may write its audit row, goes to a thread.
                retry = self.limiter.source_retry(source)
                if retry is not None:
                    raise await run_in_threadpool(self.limiter.refuse_source, source, endpoint, retry)
            else:
                await run_in_threadpool(self.limiter.admit_source, source, endpoint)
        except RateLimited as exc:
            metrics.REJECTED.labels(endpoint, exc.code).inc()
            await too_many(exc)(scope, receive, send)
            return
        except (StoreError, sqlite3.Error) as exc:
            log_event(log, "store_error", logging.ERROR, reason=str(exc))
            response = JSONResponse(
                error_body("unavailable", "the RA cannot reach its store; retry later"),
                status_code=503,
                headers={"Retry-After": "1"},
            )
            await response(scope, receive, send)
            return
        if not folded:
            await self.app(scope, receive, send)
            return
        # Issuance: the count is taken in the transaction that records the certificate (the
        # route hands this ticket to the service); a request that ends before it is counted here.
        ticket = SourceTicket(source, endpoint)
        scope.setdefault("state", {})[SOURCE_TICKET] = ticket
        try:
            await self.app(scope, receive, send)
        finally:
            if not ticket.settled:
                try:
                    await run_in_threadpool(self.limiter.count_source, ticket)
                except (StoreError, sqlite3.Error) as exc:
                    log_event(log, "store_error", logging.ERROR, reason=str(exc))
