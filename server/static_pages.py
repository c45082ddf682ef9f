"""Serving the browser pages' own files (annotation page, map viewer): a fixed set of names, no caching surprises.

The pages have no build step: each is one HTML file plus a few scripts and style sheets in ``server/static/<page>/``.
Only the names a page declares are served, so the route can never expose another file of the folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

#: Pages change with the server: browsers revalidate instead of keeping a stale script.
NO_CACHE = {"Cache-Control": "no-cache"}
HTML = "text/html; charset=utf-8"
JS = "text/javascript; charset=utf-8"
CSS = "text/css; charset=utf-8"


def page_file(directory: Path, name: str, media_types: Mapping[str, str]) -> FileResponse:
    """A file of a page's folder, if the page declares it.

    Args:
        directory: The page's folder.
        name: File name asked for.
        media_types: The files the page serves, with their media types.

    Returns:
        The file, revalidated by browsers on each load.

    Raises:
        HTTPException: 404 for any other name.
    """
    media_type = media_types.get(name)
    if media_type is None:
        raise HTTPException(404, f"no such file: {name!r}")
    return FileResponse(directory / name, media_type=media_type, headers=NO_CACHE)


def add_asset_route(router: APIRouter, prefix: str, directory: Path, media_types: Mapping[str, str]) -> None:
    """Register ``GET {prefix}/{name}`` serving the page's declared scripts and style sheets.

    Args:
        router: The page's router.
        prefix: URL prefix of the assets, e.g. ``/viewer/static``.
        directory: The page's folder.
        media_types: The files served, with their media types.
    """

    async def asset(name: str) -> FileResponse:
        """A script or style sheet of the page (404 for any other name)."""
        return page_file(directory, name, media_types)

    router.add_api_route(prefix + "/{name}", asset, methods=["GET"])


COMMON_DIR = Path(__file__).resolve().parent / "static" / "common"
#: The script every page loads first (``window.EOFusion``: JSON calls and the error box).
common_router = APIRouter(include_in_schema=False)
add_asset_route(common_router, "/static/common", COMMON_DIR, {"eofusion.js": JS})
