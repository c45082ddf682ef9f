"""One error model for the top-level app (STAC, tiles, labels, pages): the STAC API's shape ``{code, description}``.

The status of each of the project's own errors comes from :func:`eofusion.errors.status_of` (the one map); this
module only writes the answers. Client mistakes get a 4xx naming what was wrong; a real bug gets a 500 whose body
and log line carry the request's id (:class:`RequestIds`, the outermost layer, which also keeps the connection
usable after a 500). :class:`BBoxGuard` and :class:`JsonBodyGuard` reject STAC input that stac-fastapi or pgstac
would otherwise fail on with a 500.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import jsonpatch
import jsonpointer
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError, ResponseValidationError
from fastapi.responses import JSONResponse
from stac_fastapi.api.errors import DEFAULT_STATUS_CODES
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eofusion.errors import Busy, EOFusionError, status_of
from plugins.context import REQUEST_ID

log = logging.getLogger("eofusion.server")

#: The ``code`` of an error body, by HTTP status (stac-fastapi names its 404 ``NotFoundError``).
ERROR_CODES: dict[int, str] = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFoundError", 405: "MethodNotAllowed",
    406: "NotAcceptable", 409: "Conflict", 413: "PayloadTooLarge", 415: "UnsupportedMediaType",
    422: "UnprocessableEntity", 424: "FailedDependency", 429: "TooManyRequests", 500: "InternalServerError",
    503: "ServiceUnavailable",
}
#: A client's ``X-Request-ID`` is kept when it looks like an id (else a fresh one is made): it goes into logs.
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def error_body(status: int, description: str, **extra: Any) -> dict[str, Any]:
    """The JSON error body: ``code`` (from the status), ``description``, and any extra members."""
    return {"code": ERROR_CODES.get(status, "Error"), "description": description, **extra}


def error_response(status: int, description: str, headers: dict[str, str] | None = None,
                   **extra: Any) -> JSONResponse:
    """A JSON error answer in the STAC shape."""
    return JSONResponse(error_body(status, description, **extra), status_code=status, headers=headers)


def error_of(exc: EOFusionError) -> JSONResponse:
    """The answer for one of the project's own errors: its status, its message, ``Retry-After`` when busy."""
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Busy) else None
    return error_response(status_of(exc), str(exc), headers)


async def send_error(send: Send, status: int, description: str, headers: list[tuple[bytes, bytes]] | None = None,
                     **extra: Any) -> None:
    """Send a complete JSON error answer from a pure ASGI middleware."""
    body = json.dumps(error_body(status, description, **extra)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def internal_error_description(request_id: str | None) -> str:
    """What a 500 says: no detail of the fault, the id under which the server logged it."""
    return f"internal server error (request id {request_id}); the server logged the details under this id"


def _describe(err: RequestValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query"))
        if e.get("type") == "json_invalid":
            return f"malformed JSON body: {e.get('ctx', {}).get('error', e.get('msg'))}"
        parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error raised below the routes in the STAC error shape, with the one status map.

    Also installs :class:`RequestIds` as the outermost layer (see :func:`install_outermost`).
    """

    @app.exception_handler(EOFusionError)
    async def eofusion_error(request: Request, exc: EOFusionError) -> JSONResponse:
        return error_of(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, _describe(exc))

    @app.exception_handler(asyncpg.exceptions.RaiseError)
    @app.exception_handler(asyncpg.exceptions.DataError)
    @app.exception_handler(asyncpg.exceptions.DatatypeMismatchError)  # a CQL2 text filter that is no condition
    async def query_error(request: Request, exc: Exception) -> JSONResponse:
        # pgstac raises these for queries it cannot run (unknown CQL2 operator, bad value type):
        # the client's input, not a server fault.
        return error_response(400, f"invalid query: {exc}")

    @app.exception_handler(asyncpg.exceptions.PostgresSyntaxError)
    async def free_text_error(request: Request, exc: asyncpg.exceptions.PostgresSyntaxError) -> JSONResponse:
        # pgstac turns the free-text ``q`` into a tsquery, which PostgreSQL parses: its syntax is the client's.
        # Any other syntax error is in our SQL: a bug, re-raised to the 500 answer.
        if "tsquery" not in str(exc):
            raise exc
        return error_response(400, f"invalid free-text q: {exc}")

    @app.exception_handler(jsonpatch.JsonPatchException)
    @app.exception_handler(jsonpointer.JsonPointerException)
    async def patch_error(request: Request, exc: Exception) -> JSONResponse:
        # A JSON Patch (PATCH of an item or collection) that names a missing member or fails its test.
        conflict = isinstance(exc, jsonpatch.JsonPatchConflict | jsonpatch.JsonPatchTestFailed)
        text = str(exc)  # jsonpointer quotes the whole document: keep the start
        text = text if len(text) <= 300 else text[:300] + "..."
        return error_response(409 if conflict else 400, f"the JSON Patch cannot be applied: {text}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    # stac-fastapi's own client errors (NotFoundError...), in the same shape, without logging a traceback for each.
    for cls, status in DEFAULT_STATUS_CODES.items():
        if status < 500:
            app.add_exception_handler(cls, _client_error(status))

    @app.exception_handler(ResponseValidationError)
    async def invalid_answer(request: Request, exc: ResponseValidationError) -> JSONResponse:
        # Our own answer broke its model: a bug, handled (so not re-raised), hence logged here.
        rid = REQUEST_ID.get()
        log.error("request %s failed: %s %s", rid, request.method, request.url.path, exc_info=exc)
        return error_response(500, internal_error_description(rid), request_id=rid)

    app.add_exception_handler(Exception, internal_error_handler)

    install_outermost(app, RequestIds)


async def internal_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """The 500 answer of a Starlette app (``app.add_exception_handler(Exception, internal_error_handler)``).

    Starlette's ServerErrorMiddleware answers with this, then re-raises: :class:`RequestIds` logs the traceback
    under the same id. A mounted Starlette app (pygeoapi's) may install it too, to put the id in its 500 bodies.
    """
    rid = REQUEST_ID.get()
    return error_response(500, internal_error_description(rid), request_id=rid)


def _client_error(status: int) -> Callable[[Request, Exception], Any]:
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        return error_response(status, str(exc))
    return handler


def install_outermost(app: FastAPI, middleware: Callable[[ASGIApp], ASGIApp]) -> None:
    """Wrap ``middleware`` around the app's whole stack, Starlette's ServerErrorMiddleware included.

    ``add_middleware`` cannot: Starlette always puts ServerErrorMiddleware outside the user's middleware, and it
    re-raises every exception after answering, which makes uvicorn log it and close the keep-alive connection.
    """
    build = app.build_middleware_stack

    def build_wrapped() -> ASGIApp:
        return middleware(build())

    app.build_middleware_stack = build_wrapped  # type: ignore[method-assign]


class RequestIds:
    """Give each request an id (``X-Request-ID``, :data:`plugins.context.REQUEST_ID`) and end every failure here.

    An exception escaping the app is logged with its traceback and the request id, and answered with a complete
    500 if no answer has started; it is not re-raised, so uvicorn keeps the connection open for the client's next
    request. An answer cut off half way cannot be mended: uvicorn then closes the connection, the only honest end.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if _CLIENT_ID.match(incoming) else uuid.uuid4().hex
        token = REQUEST_ID.set(rid)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            log.error("request %s failed: %s %s", rid, scope.get("method"), scope.get("path"), exc_info=exc)
            if not started:
                await send_error(send_with_id, 500, internal_error_description(rid), request_id=rid)
        finally:
            REQUEST_ID.reset(token)


class BBoxGuard:
    """Reject ``bbox`` values outside WGS84 before they reach pgstac (which would answer 500)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/stac"):
            from urllib.parse import parse_qs

            qs = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            for raw in qs.get("bbox", []):
                problem = bbox_problem(raw.split(","))
                if problem:
                    await send_error(send, 400, problem)
                    return
        await self.app(scope, receive, send)


def bbox_problem(values: list[str] | list[float]) -> str | None:
    """Why a bbox is invalid, or None when it is a valid WGS84 2-D or 3-D box."""
    try:
        v = [float(x) for x in values]
    except (TypeError, ValueError):
        return f"bbox must be 4 or 6 numbers, got {values!r}"
    if len(v) not in (4, 6):
        return f"bbox must be 4 or 6 numbers, got {len(v)}"
    w, s, e, n = (v[0], v[1], v[2], v[3]) if len(v) == 4 else (v[0], v[1], v[3], v[4])
    if not (-180 <= w <= 180 and -180 <= e <= 180):
        return f"bbox longitudes must lie in [-180, 180], got {w}, {e}"
    if not (-90 <= s <= 90 and -90 <= n <= 90):
        return f"bbox latitudes must lie in [-90, 90], got {s}, {n}"
    if s > n:
        return f"bbox south ({s}) is north of its north ({n})"
    return None


_JSON_SPACE = b" \t\r\n"


class JsonBodyGuard:
    """STAC bodies must be JSON objects (a PATCH may also be a JSON Patch array).

    stac-pydantic's validators call ``.get`` on whatever the body is and stac-fastapi's transactions take an empty
    body for ``None``: both fail with a 500. Only the first non-blank byte is looked at; the bytes read for it are
    handed on to the app unchanged.
    """

    def __init__(self, app: ASGIApp, prefix: str = "/stac/") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method", "")
        if scope["type"] != "http" or method not in ("POST", "PUT", "PATCH") or \
                not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        read: list[Message] = []
        first = b""
        while True:
            message = await receive()
            read.append(message)
            if message["type"] != "http.request":
                break  # the client left: let the app see it
            first = message.get("body", b"").lstrip(_JSON_SPACE)[:1]
            if first or not message.get("more_body", False):
                break
        if read[-1]["type"] == "http.request":
            allowed = b"{[" if method == "PATCH" else b"{"
            if not first:
                await send_error(send, 400, f"{method} {scope['path']} needs a JSON object body")
                return
            if first not in allowed:
                await send_error(send, 400, f"the body of {method} {scope['path']} must be a JSON object")
                return

        async def replay() -> Message:
            return read.pop(0) if read else await receive()

        await self.app(scope, replay, send)
