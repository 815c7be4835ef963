"""POST /v1/issue without FastAPI's per-request machinery, for requests that are well formed.

Profiled at 32 clients (docs/performance.md), a third of the RA's CPU per issuance went to the
layers between the socket and the service call: Starlette's router and exception wrappers,
FastAPI's dependency solving, body parsing and response serialisation. This ASGI middleware
answers the common case itself: a JSON body that the route's own request model accepts. It
parses the body the way FastAPI does (JSON, then `model_validate` on the object), calls the
same handler the route calls, and turns the service's exceptions into answers with the app's
own exception handlers (zt.ra.http_errors), so a client sees the same statuses and bodies.

Anything else goes to FastAPI unchanged, with the body it sent replayed: another media type,
a body that is not JSON or that the model refuses (FastAPI's 400 with its reason and code),
repeated headers. Validation has no side effect, so handing such a request on is safe. It sits
inside BodyLimit and SourceLimit (their limits and the source ticket apply as before) and
inside the request counter; the OpenAPI schema still comes from the FastAPI route.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PATH = "/v1/issue"

Handler = Callable[[Request, BaseModel, str | None], Awaitable[BaseModel]]


class FastIssue:
    def __init__(
        self,
        app: ASGIApp,
        *,
        model: type[BaseModel],
        handle: Handler,
        exception_handlers: Mapping[Any, Callable[[Request, Any], Response | Awaitable[Response]]],
        expect: Callable[[], AbstractContextManager[None]] = nullcontext,
    ) -> None:
        self.app = app
        self.model = model
        self.handle = handle
        self.exception_handlers = exception_handlers
        self.expect = expect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        # An issuance under way from here on: the group commit's next batch may wait for it.
        with self.expect():
            await self._issue(scope, receive, send)

    async def _issue(self, scope: Scope, receive: Receive, send: Send) -> None:
        authorization, ok = _single_headers(scope)
        if not ok:
            await self.app(scope, receive, send)
            return
        try:
            body, more = await _read_body(receive)
        except StarletteHTTPException as exc:  # BodyLimit's 413 on a streamed body
            await self._answer_error(scope, receive, send, exc)
            return
        if more is not None:  # the client went away mid-body: let FastAPI see the same
            await self.app(scope, _replay(body, more, receive), send)
            return
        try:
            parsed = self.model.model_validate(json.loads(body))
        except (ValueError, ValidationError):  # json.JSONDecodeError is a ValueError
            await self.app(scope, _replay(body, None, receive), send)
            return
        request = Request(scope, receive)
        try:
            answer = await self.handle(request, parsed, authorization)
        except Exception as exc:  # noqa: BLE001 - mapped by the app's own handlers, as FastAPI would
            await self._answer_error(scope, receive, send, exc)
            return
        data = answer.model_dump_json().encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(data)).encode()), (b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": data})

    async def _answer_error(self, scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
        handler = next((self.exception_handlers[c] for c in type(exc).__mro__ if c in self.exception_handlers), None)
        if handler is None:
            raise exc
        response = handler(Request(scope, receive), exc)
        if inspect.isawaitable(response):
            response = await response
        await response(scope, receive, send)


def _single_headers(scope: Scope) -> tuple[str | None, bool]:
    """(the Authorization header, whether the request is one this path takes: JSON, and no
    repeated Content-Type or Authorization whose reading could differ from FastAPI's)."""
    authorization: str | None = None
    content_type: bytes | None = None
    seen: set[bytes] = set()
    for name, value in scope["headers"]:
        if name in (b"authorization", b"content-type"):
            if name in seen:
                return None, False
            seen.add(name)
            if name == b"authorization":
                authorization = value.decode("latin-1")
            else:
                content_type = value
    if content_type is None or content_type.split(b";", 1)[0].strip().lower() != b"application/json":
        return None, False
    return authorization, True


async def _read_body(receive: Receive) -> tuple[bytes, Message | None]:
    """The whole body, or what came before a message that is not body (returned to replay)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), None


def _replay(body: bytes, then: Message | None, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent, then
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": then is not None}
        if then is not None:
            message, then = then, None
            return message
        return await receive()

    return replayed
