"""Client mistakes in tile requests answered as 4xx: what rio-tiler, rasterio and titiler raise, mapped once.

The titiler routes are APIRoutes of our own class, so an exception raised while their parameters are
parsed or their image is read becomes an :class:`HTTPException` with a status the client can act on
(rendered by the app's handler in the usual ``{code, description}`` shape). Anything not listed is a
real bug and stays a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

import morecantile.errors
import pyproj.exceptions
import rasterio.errors
import rio_tiler.errors
from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from titiler.core.errors import BadRequestError, TileNotFoundError

from eofusion.errors import EOFusionError, status_of

log = logging.getLogger(__name__)

#: Exceptions that mean "nothing there" (a tile or point outside the raster).
NOT_FOUND: tuple[type[Exception], ...] = (
    rio_tiler.errors.TileOutsideBounds,
    rio_tiler.errors.PointOutsideBounds,
    TileNotFoundError,
)

#: Exceptions that mean "the request asks for something impossible": bad bands, expressions, formats, CRS,
#: zoom levels, windows. Checked after :data:`NOT_FOUND`, so its subclasses of RioTilerError win there.
BAD_REQUEST: tuple[type[Exception], ...] = (
    BadRequestError,
    rio_tiler.errors.RioTilerError,
    morecantile.errors.MorecantileError,
    rasterio.errors.CRSError,
    rasterio.errors.WindowError,
    pyproj.exceptions.CRSError,
)


def status_for(exc: Exception) -> int | None:
    """The 4xx status of a client mistake, or None when ``exc`` is not one (a bug: 500)."""
    if isinstance(exc, EOFusionError):
        return status_of(exc)
    if isinstance(exc, NOT_FOUND):
        return 404
    if isinstance(exc, BAD_REQUEST):
        return 400
    return None


def describe(exc: Exception) -> str:
    """A one-line message for ``exc`` (the library's own words, which name the parameter or band)."""
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())[:1000]


class TilesRoute(APIRoute):
    """An APIRoute whose known tiler exceptions become 4xx answers instead of 500s."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler (parameter parsing, dependencies and the endpoint) in the mapping."""
        handler = super().get_route_handler()

        async def mapped(request: Request) -> Response:
            try:
                return await handler(request)
            except (HTTPException, RequestValidationError):
                raise
            except Exception as exc:
                status = status_for(exc)
                if status is None:
                    raise
                log.info("tiles: %s %s answered %d: %s", request.method, request.url.path, status, describe(exc))
                raise HTTPException(status_code=status, detail=describe(exc)) from exc

        return mapped
