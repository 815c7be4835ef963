"""The RA's HTTP API (FastAPI): routes, request/response models, and the OpenAPI schema.

POST /v1/register  admin credential       -> identity + one-time bootstrap token
POST /v1/issue     bootstrap token + CSR  -> certificate, chain, bundle
POST /v1/renew     x5c renewal proof + CSR-> certificate for the same SPIFFE ID
POST /v1/revoke    admin credential       -> revoked serials, new CRL number
GET  /v1/bundle                           -> the trust bundle (PEM)
GET  /v1/status                           -> health and counts
GET  /metrics                             -> Prometheus text
GET  /openapi.json                        -> this API's schema

Every endpoint may answer 429 (rate limited per source; /v1/issue and /v1/renew also per
identity; /v1/issue, /v1/register and /v1/revoke also `locked_out` after wrong tokens) with
`Retry-After` and `{error, reason, retry_after}`: docs/rate-limits.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zt import __version__
from zt.ca.authority import Authority
from zt.ca.crl import parse_reason
from zt.ca.layout import CaPaths
from zt.clock import Clock, SystemClock, rfc3339
from zt.errors import StoreError
from zt.httpedge import requests_in_progress
from zt.logjson import log_event
from zt.ra import http_errors, metrics
from zt.ra.commit_client import RemoteCommit
from zt.ra.fast_issue import FastIssue
from zt.ra.group_commit import GroupCommit
from zt.ra.ratelimit import RateLimiter
from zt.ra.revocation import crl_state, refresh_crl_if_due
from zt.ra.service import MIN_LEAF_TTL, Issued, RegistrationAuthority
from zt.ra.settings import MAX_LEAF_TTL, RaSettings
from zt.ra.store_open import open_store
from zt.ra.tokens import bearer_token

log = logging.getLogger("zt.ra")

PEM_MAX = 16 * 1024


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorResponse(BaseModel):
    error: str = Field(description="stable machine-readable code, e.g. used_token")
    reason: str = Field(description="what went wrong, for a human")


# What zt.spiffe.validate_service_name accepts, as a regular expression a schema can carry (no
# look-ahead): 1-64 of A-Z a-z 0-9 . - _, but not "." or "..".
SERVICE_PATTERN = r"^([A-Za-z0-9_-][A-Za-z0-9._-]{0,63}|\.[A-Za-z0-9_-][A-Za-z0-9._-]{0,62}|\.\.[A-Za-z0-9._-]{1,62})$"
# What zt.ra.service.normalise_serial accepts: hex, optionally 0x-prefixed or colon-separated.
SERIAL_PATTERN = r"^(0[xX])?[0-9A-Fa-f]+(:[0-9A-Fa-f]+)*$"
# A PEM block of a PKCS#10 request (its content is checked by the RA: malformed_csr).
CSR_PATTERN = r"-----BEGIN (NEW )?CERTIFICATE REQUEST-----"
RevocationReason = Literal[
    "unspecified",
    "key-compromise",
    "affiliation-changed",
    "superseded",
    "cessation-of-operation",
    "privilege-withdrawn",
]  # zt.ca.crl.REASONS; a test keeps the two equal


class RateLimitedResponse(ErrorResponse):
    retry_after: int = Field(description="seconds until the same request would be let through; as Retry-After")


def json_integer(v: object) -> object:
    """What JSON Schema calls an integer: 5 and 5.0, not true (pydantic's lax mode takes true as 1,
    schemathesis found) and not "5" (which it would parse). None passes to the field's own check."""
    if v is None or (isinstance(v, int) and not isinstance(v, bool)):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    raise ValueError("must be a JSON integer")


class RegisterRequest(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"service": "billing"}, {"service": "web", "token_ttl_seconds": 600}]},
    )

    service: str = Field(
        min_length=1,
        max_length=64,
        pattern=SERVICE_PATTERN,
        description="service name: one path segment of A-Z a-z 0-9 . - _ (not '.' or '..')",
    )
    token_ttl_seconds: int | None = Field(default=None, ge=1, le=30 * 86400)

    _json_integer = field_validator("token_ttl_seconds", mode="before")(lambda v: json_integer(v))


class RegisterResponse(BaseModel):
    service: str
    spiffe_id: str
    token: str = Field(description="one-time bootstrap token; shown once, stored only as a hash")
    expires_at: str


class IssueRequest(Strict):
    csr: str = Field(
        min_length=1,
        max_length=PEM_MAX,
        pattern=CSR_PATTERN,
        description="PEM PKCS#10 request whose only SAN is the SPIFFE ID",
    )
    ttl_seconds: int | None = Field(
        default=None,
        ge=int(MIN_LEAF_TTL.total_seconds()),
        le=int(MAX_LEAF_TTL.total_seconds()),
        description="a lifetime shorter than the RA's --leaf-ttl, which is also the default; seconds",
    )

    _json_integer = field_validator("ttl_seconds", mode="before")(lambda v: json_integer(v))


class RenewRequest(IssueRequest):
    proof: str = Field(
        min_length=1, max_length=PEM_MAX, description="x5c-signed JWT proving possession of the current key"
    )


class CertificateResponse(BaseModel):
    certificate: str
    chain: str
    bundle: str
    serial: str
    spiffe_id: str
    not_before: str
    not_after: str


_Absent = SkipJsonSchema[None]  # Python's default when a field is left out; not a value a client may send


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # the Python default (None) is no JSON value of the field's type


class RevokeRequest(Strict):
    """Exactly one of `serial` and `service` (the schema's oneOf, enforced here too); no nulls."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "oneOf": [{"required": ["serial"]}, {"required": ["service"]}],
            "examples": [{"serial": "3f2a9c", "reason": "key-compromise"}, {"service": "billing"}],
        },
    )

    serial: Annotated[str, StringConstraints(min_length=1, max_length=80, pattern=SERIAL_PATTERN)] | _Absent = Field(
        default=None, description="one certificate", json_schema_extra=_no_default
    )
    service: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=SERVICE_PATTERN)] | _Absent = Field(
        default=None,
        description="every certificate of this service (and its identity)",
        json_schema_extra=_no_default,
    )
    reason: RevocationReason | _Absent = Field(
        default=None, description="RFC 5280 reason code", json_schema_extra=_no_default
    )

    @field_validator("serial", "service", "reason", mode="before")
    @classmethod
    def _no_null(cls, v: object) -> object:
        if v is None:
            raise ValueError("leave the field out instead of null")
        return v

    @model_validator(mode="after")
    def _exactly_one(self) -> RevokeRequest:
        if (self.serial is None) == (self.service is None):
            raise ValueError("give exactly one of serial or service")
        return self


class RevokeResponse(BaseModel):
    revoked: list[str]
    crl_number: int


class StatusResponse(BaseModel):
    status: str
    version: str
    trust_domain: str
    identities: int
    certificates: int
    active: int
    revoked: int
    tokens_outstanding: int
    crl_number: int
    crl_next_update: str | None
    intermediate_not_after: str


_TOO_MANY: dict[str, object] = {
    "model": RateLimitedResponse,
    "description": "rate_limited (too many requests from this source, or issuances for this identity) "
    "or locked_out (too many wrong tokens from this source); docs/rate-limits.md",
    "headers": {
        "Retry-After": {"description": "whole seconds, rounded up", "schema": {"type": "integer", "minimum": 1}}
    },
}
_ERRORS: dict[int | str, dict[str, object]] = {
    **{code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 413, 503)},
    429: _TOO_MANY,
}
_READ_ERRORS: dict[int | str, dict[str, object]] = {429: _TOO_MANY}


class PemResponse(PlainTextResponse):
    """PEM text under the media type tools use for PEM files; the schema names the same type."""

    media_type = "application/x-pem-file"


# OpenAPI links: how one answer feeds the next request (register -> issue -> renew -> revoke).
# Clients read them as documentation; schemathesis's stateful phase follows them.
REGISTER_LINKS = {
    "IssueWithTheToken": {
        "operationId": "issue",
        "parameters": {"header.authorization": "Bearer {$response.body#/token}"},
        "description": "the one-time token authorises one issuance for the registered service",
    },
    "RevokeTheService": {
        "operationId": "revoke",
        "requestBody": {"service": "$response.body#/service"},
        "description": "revoke every certificate of the service (and its identity)",
    },
}
ISSUED_LINKS = {
    "RenewTheCertificate": {
        "operationId": "renew",
        "requestBody": {"csr": "$response.body#/certificate", "proof": "$response.body#/chain"},
        "description": "renew with a proof signed by this certificate's key over its chain (x5c) and a new CSR",
    },
    "RevokeTheCertificate": {
        "operationId": "revoke",
        "requestBody": {"serial": "$response.body#/serial"},
        "description": "revoke this certificate",
    },
}


def _certificate_response(issued: Issued) -> CertificateResponse:
    r = issued.record
    return CertificateResponse(
        certificate=r.pem,
        chain=issued.chain_pem,
        bundle=issued.bundle_pem,
        serial=r.serial,
        spiffe_id=r.spiffe_id,
        not_before=rfc3339(dt.datetime.fromtimestamp(r.not_before, dt.UTC)),
        not_after=rfc3339(dt.datetime.fromtimestamp(r.not_after, dt.UTC)),
    )


class CountRequests:
    """Count and time every answer by endpoint and status (metrics.REQUESTS, metrics.LATENCY).

    A plain ASGI middleware, not `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs
    each request in a task group with memory streams between it and the app, which cost about
    a tenth of the RA's CPU per issuance (profiled: docs/performance.md). The time is taken
    when the response starts, as before (the handler's work, not the client's reading).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                endpoint = http_errors.endpoint_in(scope)
                metrics.REQUESTS.labels(endpoint, str(message["status"])).inc()
                metrics.LATENCY.labels(endpoint).observe(time.perf_counter() - start)
            await send(message)

        await self.app(scope, receive, counted)


def build_ra(settings: RaSettings, clock: Clock) -> RegistrationAuthority:
    paths = CaPaths(settings.ca_dir)
    store = open_store(
        settings.store, paths, durable=settings.durable, audit_echo=sys.stdout if settings.audit_stdout else None
    )
    store.check()
    trust_domain = store.meta("trust_domain")
    if not trust_domain:
        raise StoreError(f"{store.location} has no trust domain; was it made by 'ztca init'?")
    authority = Authority.load(paths, trust_domain)
    crl_url = settings.crl_url or store.meta("crl_url") or None
    return RegistrationAuthority(
        store, authority, paths, clock, leaf_ttl=settings.leaf_ttl, crl_url=crl_url, limits=settings.limits
    )


def source_limiter(ra: RegistrationAuthority, settings: RaSettings) -> RateLimiter:
    """The per-source limit, on a second handle on the store whose commits do not fsync
    (synchronous=NORMAL): a count survives a kill of the RA (WAL) but may lose its last
    seconds to a power cut, which costs nothing worth an fsync on every request."""
    return RateLimiter(ra.store.sibling(durable=False), settings.limits, ra.clock)


async def _rate_state_purger(limiter: RateLimiter, interval: float) -> None:
    """Keep the rate-limit tables to what the windows need; a failure is logged, never fatal."""
    while True:
        await asyncio.sleep(interval)
        try:
            await run_in_threadpool(limiter.purge)
        except Exception as e:  # noqa: BLE001 - housekeeping must outlive any one failure
            log_event(log, "rate_purge_failed", logging.ERROR, reason=str(e))


async def _crl_refresher(ra: RegistrationAuthority, interval: float) -> None:
    """Keep the CRL from lapsing; one failure is logged and counted, never fatal."""
    while True:
        try:
            published = await run_in_threadpool(refresh_crl_if_due, ra.store, ra.authority, ra.paths, ra.clock.now())
            if published is not None:
                metrics.CRLS.inc()
                log_event(
                    log,
                    "crl_published",
                    crl_number=published.number,
                    entries=published.entries,
                    next_update=rfc3339(published.next_update),
                )
        except Exception as e:  # noqa: BLE001 - a refresher must outlive any one failure
            log_event(log, "crl_refresh_failed", logging.ERROR, reason=str(e))
        await asyncio.sleep(interval)


def create_app(settings: RaSettings, clock: Clock | None = None) -> FastAPI:
    ra = build_ra(settings, clock or SystemClock())
    # Issuances record in batches: one transaction and one fsync for all pending, in the host's
    # recorder process when zt-ra started one (zt.ra.commit_server), else in this process's own
    # writer thread (zt.ra.group_commit).
    expect: Callable[[], AbstractContextManager[None]]
    if settings.recorder_socket is not None:
        ra.recorder = RemoteCommit(settings.recorder_socket, busy=requests_in_progress)
        expect = ra.recorder.expect
    else:
        ra.committer = GroupCommit(ra.store, siblings=requests_in_progress)
        expect = ra.committer.expect
    per_source = source_limiter(ra, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks = [
            asyncio.create_task(_crl_refresher(ra, settings.crl_check_interval)),
            asyncio.create_task(_rate_state_purger(per_source, 60.0)),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if ra.committer is not None:
                await run_in_threadpool(ra.committer.close)
            if ra.recorder is not None:
                await ra.recorder.aclose()

    # Only the API and its schema: no /docs or /redoc (they load scripts from a CDN), and no
    # trailing-slash redirects (their Location is built from the client's Host header).
    app = FastAPI(
        title="zt registration authority",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,
        description="Issues SPIFFE X509-SVIDs for registered workloads. Errors are JSON "
        "{error, reason} with a 4xx status, or 503 when the RA cannot reach its "
        "store (unavailable) or cannot sign (ca_unavailable).",
    )
    http_errors.install(app)
    app.state.ra = ra

    async def issue_with(request: Request, body: BaseModel, authorization: str | None) -> CertificateResponse:
        """/v1/issue's work, for the route and for its fast path (zt.ra.fast_issue)."""
        assert isinstance(body, IssueRequest)
        # On the event loop, no thread per request: the checks and the signature take a fraction
        # of a millisecond, and the recording waits on the group commit without blocking it.
        issued = await ra.issue_async(
            bearer_token(authorization),
            body.csr,
            body.ttl_seconds,
            http_errors.source_of(request.scope),
            http_errors.source_ticket(request),
        )
        metrics.ISSUED.labels("token").inc()
        return _certificate_response(issued)

    # Innermost: inside BodyLimit and SourceLimit, as the route is.
    app.add_middleware(
        FastIssue,
        model=IssueRequest,
        handle=issue_with,
        exception_handlers=app.exception_handlers,
        expect=expect,
    )
    # Inside `count` (middleware added later wraps it): BaseHTTPMiddleware reads the body in a
    # task group, which would wrap BodyLimit's 413 in an ExceptionGroup that FastAPI turns into 400.
    app.add_middleware(http_errors.BodyLimit, limit=settings.max_body)
    # Outside BodyLimit (an oversized request counts against its source too), inside `count`
    # (a 429 is counted and timed like any answer).
    app.add_middleware(http_errors.SourceLimit, limiter=per_source)

    app.add_middleware(CountRequests)

    @app.post(
        "/v1/register",
        response_model=RegisterResponse,
        responses={**_ERRORS, 201: {"links": REGISTER_LINKS}},
        status_code=201,
        operation_id="register",
        summary="register a service and mint its one-time bootstrap token (admin)",
    )
    def register(
        request: Request, body: RegisterRequest, authorization: Annotated[str | None, Header()] = None
    ) -> RegisterResponse:
        ra.authorize_admin(bearer_token(authorization), http_errors.source_of(request.scope))
        ttl = dt.timedelta(seconds=body.token_ttl_seconds) if body.token_ttl_seconds else dt.timedelta(hours=1)
        reg = ra.register(body.service, ttl)
        return RegisterResponse(
            service=reg.identity.name,
            spiffe_id=reg.identity.spiffe_id,
            token=reg.token,
            expires_at=rfc3339(reg.expires_at),
        )

    @app.post(
        "/v1/issue",
        response_model=CertificateResponse,
        responses={**_ERRORS, 200: {"links": ISSUED_LINKS}},
        operation_id="issue",
        summary="exchange a bootstrap token and a CSR for an X509-SVID",
    )
    async def issue(
        request: Request, body: IssueRequest, authorization: Annotated[str | None, Header()] = None
    ) -> CertificateResponse:
        # Well-formed requests are answered by FastIssue before they get here; this is the
        # path of the others (and the schema's).
        return await issue_with(request, body, authorization)

    @app.post(
        "/v1/renew",
        response_model=CertificateResponse,
        responses={**_ERRORS, 200: {"links": ISSUED_LINKS}},
        operation_id="renew",
        summary="renew: prove possession of the current certificate's key, get a new one",
    )
    def renew(request: Request, body: RenewRequest) -> CertificateResponse:
        issued = ra.renew(body.proof, body.csr, body.ttl_seconds, http_errors.source_ticket(request))
        metrics.ISSUED.labels("renew").inc()
        return _certificate_response(issued)

    @app.post(
        "/v1/revoke",
        response_model=RevokeResponse,
        responses=_ERRORS,
        operation_id="revoke",
        summary="revoke one certificate or all of a service's, and publish a new CRL (admin)",
    )
    def revoke(
        request: Request, body: RevokeRequest, authorization: Annotated[str | None, Header()] = None
    ) -> RevokeResponse:
        ra.authorize_admin(bearer_token(authorization), http_errors.source_of(request.scope))
        done, published = ra.revoke(serial=body.serial, service=body.service, reason=parse_reason(body.reason))
        metrics.REVOKED.inc(len(done))
        metrics.CRLS.inc()
        return RevokeResponse(revoked=done, crl_number=published.number)

    @app.get(
        "/v1/bundle",
        response_class=PemResponse,
        operation_id="bundle",
        summary="the trust bundle (PEM)",
        responses={**_READ_ERRORS, 200: {"content": {PemResponse.media_type: {"schema": {"type": "string"}}}}},
    )
    def bundle() -> PemResponse:
        return PemResponse(ra.authority.bundle_pem().decode())

    @app.get(
        "/v1/status",
        response_model=StatusResponse,
        responses=_READ_ERRORS,
        operation_id="status",
        summary="health and counts",
    )
    def status() -> StatusResponse:
        now = ra.clock.now()
        c = ra.store.counts(now.timestamp())
        crl = crl_state(ra.store)
        return StatusResponse(
            status="ok",
            version=__version__,
            trust_domain=ra.authority.trust_domain,
            identities=c.identities,
            certificates=c.certificates,
            active=c.active,
            revoked=c.revoked,
            tokens_outstanding=c.tokens_outstanding,
            crl_number=crl.number,
            crl_next_update=rfc3339(dt.datetime.fromtimestamp(crl.next_update, dt.UTC)) if crl.next_update else None,
            intermediate_not_after=rfc3339(ra.authority.not_after),
        )

    @app.get("/metrics", response_class=PlainTextResponse, include_in_schema=False)
    def prometheus() -> Response:
        data, content_type = metrics.render()
        return Response(data, media_type=content_type)

    return app
