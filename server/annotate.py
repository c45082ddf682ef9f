"""The annotation page at ``/annotate``: active learning in the browser.

The page is static (HTML, JS and CSS shipped in ``server/static/annotate/``, no build step and
no external resource); it talks to the server's own APIs: STAC for pools and patches, OGC API
Processes for rounds and accepting, and ``/labels`` for the label catalogue.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parent / "static" / "annotate"
ASSET_PREFIX = "/annotate/static"
_MEDIA_TYPES = {
    "annotate.js": "text/javascript; charset=utf-8",
    "annotate.css": "text/css; charset=utf-8",
}
_HEADERS = {"Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


@router.get("/annotate")
async def annotate_page() -> FileResponse:
    """The annotation page.

    Returns:
        The HTML page; its scripts and styles load from ``/annotate/static/``.
    """
    return FileResponse(STATIC_DIR / "annotate.html", media_type="text/html; charset=utf-8", headers=_HEADERS)


@router.get(ASSET_PREFIX + "/{name}")
async def annotate_asset(name: str) -> FileResponse:
    """A script or style sheet of the page.

    Args:
        name: File name; only the page's own files are served.

    Returns:
        The file.

    Raises:
        HTTPException: 404 for any other name.
    """
    media_type = _MEDIA_TYPES.get(name)
    if media_type is None:
        raise HTTPException(404, f"no such file: {name!r}")
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=_HEADERS)
