"""Clear 4xx answers for bad input, in the STAC API's error shape ``{code, description}``."""

from __future__ import annotations

import json

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send


def _describe(err: RequestValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query"))
        if e.get("type") == "json_invalid":
            return f"malformed JSON body: {e.get('ctx', {}).get('error', e.get('msg'))}"
        parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Answer validation failures with 400 and a readable description."""

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"code": "BadRequest", "description": _describe(exc)}, status_code=400)

    @app.exception_handler(asyncpg.exceptions.RaiseError)
    @app.exception_handler(asyncpg.exceptions.DataError)
    async def query_error(request: Request, exc: Exception) -> JSONResponse:
        # pgstac raises these for queries it cannot run (unknown CQL2 operator, bad value type):
        # the client's input, not a server fault.
        return JSONResponse({"code": "BadRequest", "description": f"invalid query: {exc}"}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFoundError",
                409: "Conflict"}.get(exc.status_code, "Error")
        return JSONResponse({"code": code, "description": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))


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
                    body = json.dumps({"code": "BadRequest", "description": problem}).encode()
                    await send({"type": "http.response.start", "status": 400,
                                "headers": [(b"content-type", b"application/json")]})
                    await send({"type": "http.response.body", "body": body})
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
