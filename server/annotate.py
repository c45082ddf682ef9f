"""The annotation page at ``/annotate``: active learning in the browser.

The page is static (HTML, JS and CSS shipped in ``server/static/annotate/``, no build step and
no external resource); it talks to the server's own APIs: STAC for pools and patches, OGC API
Processes for rounds and accepting, and ``/labels`` for the label catalogue.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from server.static_pages import CSS, HTML, JS, NO_CACHE, add_asset_route

STATIC_DIR = Path(__file__).resolve().parent / "static" / "annotate"
ASSET_PREFIX = "/annotate/static"
_MEDIA_TYPES = {"annotate.js": JS, "annotate.css": CSS}

router = APIRouter(include_in_schema=False)


@router.get("/annotate")
async def annotate_page() -> FileResponse:
    """The annotation page.

    Returns:
        The HTML page; its scripts and styles load from ``/annotate/static/``.
    """
    return FileResponse(STATIC_DIR / "annotate.html", media_type=HTML, headers=NO_CACHE)


add_asset_route(router, ASSET_PREFIX, STATIC_DIR, _MEDIA_TYPES)
