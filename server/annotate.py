"""The annotation page at ``/annotate``: active learning in the browser.

The page is static (HTML, JS and CSS shipped in ``server/static/annotate/``, no build step and
no external resource); it talks to the server's own APIs: STAC for pools and patches, OGC API
Processes for rounds and accepting, and ``/labels`` for the label catalogue. On the loopback demo
the page's ``<body>`` says so (``data-demo-key="available"``, a fixed marker, never the key) and the
script fetches the key from ``/annotate/demo-key`` (``server.demo_key``) into the page's memory.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from server import demo_key
from server.static_pages import CSS, HTML, JS, NO_CACHE, add_asset_route

STATIC_DIR = Path(__file__).resolve().parent / "static" / "annotate"
ASSET_PREFIX = "/annotate/static"
_MEDIA_TYPES = {"annotate.js": JS, "annotate.css": CSS}
_BODY = "<body>"
_DEMO_BODY = '<body data-demo-key="available">'

router = APIRouter(include_in_schema=False)
router.include_router(demo_key.router)


@router.get("/annotate", response_model=None)
async def annotate_page(request: Request) -> Response:
    """The annotation page.

    Args:
        request: The request; on the loopback demo, for a loopback client, the page is told to fetch the key.

    Returns:
        The HTML page; its scripts and styles load from ``/annotate/static/``.
    """
    if demo_key.demo_key_for(request) is None:
        return FileResponse(STATIC_DIR / "annotate.html", media_type=HTML, headers=NO_CACHE)
    page = (STATIC_DIR / "annotate.html").read_text(encoding="utf-8").replace(_BODY, _DEMO_BODY, 1)
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


add_asset_route(router, ASSET_PREFIX, STATIC_DIR, _MEDIA_TYPES)
