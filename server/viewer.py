"""The map viewer at ``/viewer``: scene imagery, patch outlines and fused posts on a Leaflet map.

The page is static (HTML, JS and CSS in ``server/static/viewer/``) and talks to the server's own
APIs: STAC search for scenes and patches, ``/tiles`` for imagery and OGC API Processes
(``late-fusion-search``) for posts. Leaflet is not committed and never comes from a CDN:
``deploy/setup.sh`` installs it with npm (pinned in ``server/static/viewer/package.json``) and
copies its ``dist`` files into ``server/static/viewer/vendor/leaflet/``. Without them the page
answers 503 and says how to build them.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from eofusion.errors import NotFound
from eofusion.paths import inside
from server.static_pages import CSS, HTML, JS, NO_CACHE, add_asset_route

STATIC_DIR = Path(__file__).resolve().parent / "static" / "viewer"
VENDOR_DIR = STATIC_DIR / "vendor" / "leaflet"
ASSET_PREFIX = "/viewer/static"
VENDOR_PREFIX = "/viewer/vendor/leaflet"
VENDOR_FILES = ("leaflet.js", "leaflet.css", "images/layers.png", "images/marker-icon.png")
_MEDIA_TYPES = {"viewer.js": JS, "viewer.css": CSS}
_VENDOR_TYPES = {".js": JS, ".css": CSS, ".png": "image/png"}

router = APIRouter(include_in_schema=False)


def missing_vendor_files(vendor_dir: Path = VENDOR_DIR) -> list[str]:
    """The bundled Leaflet files the page needs that are not there.

    Args:
        vendor_dir: Folder the setup script copies Leaflet's ``dist`` files into.

    Returns:
        Relative paths of the missing files; empty when the page can be served.
    """
    return [name for name in VENDOR_FILES if not (vendor_dir / name).is_file()]


def unavailable_page(missing: list[str]) -> HTMLResponse:
    """The 503 page shown while Leaflet has not been bundled.

    Args:
        missing: The missing vendored files, named in the page.

    Returns:
        An HTML answer with status 503.
    """
    files = "".join(f"<li><code>{html.escape(name)}</code></li>" for name in missing)
    return HTMLResponse(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>EOFusion · Map viewer unavailable"
        "</title><link rel='icon' href='data:,'></head><body><h1>Map viewer unavailable</h1>"
        "<p>The map library (Leaflet) is bundled at install time and is not there yet: "
        "run <code>deploy/setup.sh demo</code> (or <code>deploy/setup.sh test</code>), which installs it with npm "
        "into <code>server/static/viewer/vendor/leaflet/</code>, then reload this page.</p>"
        f"<p>Missing files:</p><ul>{files}</ul><p><a href='/'>Server home</a></p></body></html>",
        status_code=503, headers={"Cache-Control": "no-store", "Retry-After": "3600"},
    )


@router.get("/viewer", response_model=None)
async def viewer_page() -> Response:
    """The map viewer page.

    Returns:
        The HTML page (its scripts and styles load from ``/viewer/static/`` and ``/viewer/vendor/leaflet/``),
        or a 503 page that says to run ``deploy/setup.sh`` when Leaflet has not been bundled.
    """
    missing = missing_vendor_files()
    if missing:
        return unavailable_page(missing)
    return FileResponse(STATIC_DIR / "viewer.html", media_type=HTML, headers=NO_CACHE)


add_asset_route(router, ASSET_PREFIX, STATIC_DIR, _MEDIA_TYPES)


@router.get(VENDOR_PREFIX + "/{path:path}")
async def vendor_asset(path: str) -> FileResponse:
    """A bundled Leaflet file (script, style sheet or one of its images).

    Args:
        path: Path below the vendor folder, e.g. ``leaflet.js`` or ``images/layers.png``.

    Returns:
        The file.

    Raises:
        HTTPException: 404 for files outside the vendor folder, of other types, or not built yet.
    """
    try:
        target = inside(VENDOR_DIR, path, "Leaflet file")  # an escape (or a NUL byte) is a missing file
    except NotFound:
        target = None
    media_type = _VENDOR_TYPES.get(target.suffix) if target is not None else None
    if target is None or media_type is None or not target.is_file():
        raise HTTPException(404, f"no such file: {path!r} (Leaflet is bundled by deploy/setup.sh)")
    return FileResponse(target, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})


@router.get("/viewer/posts-collections")
async def posts_collections(request: Request) -> JSONResponse:
    """The posts collections the fusion search can query (those registered by an ingest).

    Args:
        request: The request; the STAC API's read pool answers.

    Returns:
        ``{"collections": [{"id", "description", "embedded"}]}``, sorted by id.
    """
    async with request.app.state.readpool.acquire() as conn:
        rows = await conn.fetch("SELECT collection, description, embedding_model IS NOT NULL AS embedded "
                                "FROM eofusion.tweet_collections ORDER BY collection")
    return JSONResponse({"collections": [{"id": r["collection"], "description": r["description"],
                                          "embedded": r["embedded"]} for r in rows]})
