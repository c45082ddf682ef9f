"""The home page at ``/`` and ``/healthz``.

``/`` answers browsers with a static page (``server/static/home/``: HTML, script, style sheet, the vendored
Leaflet of the map viewer) that fills itself from ``/?f=json``: what is loaded (collections with item counts,
descriptors, ground truth and annotations; posts), where (their extents, on a footprint map), a link to each
main task and the command lines to start from, written with the public base URL. The page builds no HTML
from data: everything the server sends goes into DOM text nodes and attributes.
"""

from __future__ import annotations

import html
import json
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from catalog.db import connect
from catalog.overview import (
    CollectionSummary,
    PostsSummary,
    collection_summaries,
    posts_summaries,
    sample_item,
    server_versions,
)
from server.static_pages import CSS, HTML, JS, NO_CACHE, add_asset_route

router = APIRouter(include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parent / "static" / "home"
ASSET_PREFIX = "/home/static"
_MEDIA_TYPES = {"home.js": JS, "home.css": CSS}
#: Collections that hold what users made, not imagery to start from.
_DERIVED = frozenset({"annotations", "models"})

_LINKS = [
    ("STAC API", "stac", "/stac", "application/json", "Scenes, patches and annotations as STAC items"),
    ("STAC API documentation", "service-doc", "/stac/api.html", "text/html", "OpenAPI (Swagger UI)"),
    ("OGC API", "ogc", "/ogc", "application/json", "Features (QGIS layers) and Processes"),
    ("OGC API conformance", "conformance", "/ogc/conformance", "application/json", ""),
    ("OGC API processes", "processes", "/ogc/processes", "application/json", ""),
    ("Tiles documentation", "service-doc", "/stac/api.html#/Cloud%20Optimized%20GeoTIFF", "text/html", ""),
    ("Label catalogue", "labels", "/labels", "application/json", "Level-1 and level-2 labels"),
    ("Annotation page", "annotate", "/annotate", "text/html", "Active learning in the browser"),
    ("Map viewer", "viewer", "/viewer", "text/html", "Imagery with fused posts"),
    ("Health", "health", "/healthz", "application/json", ""),
]


@dataclass(frozen=True)
class Catalogue:
    """What the home page reports, read in one go.

    Attributes:
        collections: The STAC collections.
        posts: The posts collections.
        showcase: The collection the examples use (richest descriptors, ground truth), None when nothing is loaded.
        descriptor: The descriptor the examples search with.
        reference: An item of ``showcase`` with that descriptor, the examples' similarity reference.
    """

    collections: list[CollectionSummary]
    posts: list[PostsSummary]
    showcase: str | None
    descriptor: str | None
    reference: str | None


def _showcase(collections: list[CollectionSummary]) -> tuple[str | None, str | None]:
    """The collection and descriptor that show most: fused before s2 before s1, ground truth first, more items."""
    best: tuple[tuple[int, int, int], str, str] | None = None
    for c in collections:
        if c.id in _DERIVED or not c.descriptors:
            continue
        kind = next(k for k in ("fused", "s2", "s1") if k in c.descriptors)
        rank = (("s1", "s2", "fused").index(kind), int(c.ground_truth > 0), c.items)
        if best is None or rank > best[0]:
            best = (rank, c.id, kind)
    return (best[1], best[2]) if best else (None, None)


def read_catalogue(database_url: str) -> Catalogue:
    """Read the collections, posts and an example reference item (blocking: run it in a thread).

    Args:
        database_url: The catalogue.
    """
    with connect(database_url) as conn:
        collections = collection_summaries(conn)
        posts = posts_summaries(conn)
        showcase, descriptor = _showcase(collections)
        reference = sample_item(conn, showcase, descriptor) if showcase and descriptor else None
    return Catalogue(collections, posts, showcase, descriptor, reference)


def _curl(url: str) -> str:
    return "curl " + shlex.quote(url)


def start_lines(base: str, cat: Catalogue) -> dict[str, Any]:
    """The command lines to start from, written with the public base URL and the loaded collections.

    Args:
        base: Public base URL (no trailing slash).
        cat: What is loaded.

    Returns:
        ``{"curl": [lines], "pystac_client": code, "qgis": {"url", "layers"}}``.
    """
    curl = [_curl(f"{base}/stac/collections")]
    code = ["from pystac_client import Client", "", f"catalog = Client.open({json.dumps(base + '/stac')})"]
    if cat.showcase:
        c = cat.showcase
        curl.append(_curl(f"{base}/stac/search?" + urlencode({"collections": c, "limit": 5})))
        code += [f"search = catalog.search(collections=[{json.dumps(c)}], max_items=10)",
                 "for item in search.items():",
                 '    print(item.id, item.properties.get("eofusion:ground_truth"), item.assets["thumbnail"].href)']
        if cat.reference:
            similar = f"{base}/stac/collections/{quote(c, safe='')}/items/{quote(cat.reference, safe='')}/similar"
            curl.append(_curl(similar + "?" + urlencode({"limit": 5, "descriptor": cat.descriptor})))
            body = {"collections": [c], "similar_to": {"collection": c, "item": cat.reference},
                    "descriptor": cat.descriptor, "limit": 5}
            curl.append(f"curl -X POST {shlex.quote(base + '/stac/search')} -H 'Content-Type: application/json' "
                        f"-d {shlex.quote(json.dumps(body))}")
    curl.append(_curl(f"{base}/ogc/collections/patches/items?" + urlencode({"limit": 5, "f": "json"})))
    return {"curl": curl, "pystac_client": "\n".join(code) + "\n",
            "qgis": {"url": f"{base}/ogc", "layers": ["scenes", "patches", "annotations", "tweets"]}}


def tasks(base: str, cat: Catalogue) -> list[dict[str, str]]:
    """The main tasks, each with the link that starts it.

    Args:
        base: Public base URL (no trailing slash).
        cat: What is loaded.
    """
    similar = f"{base}/stac/search"
    if cat.showcase and cat.reference:
        similar = (f"{base}/stac/collections/{quote(cat.showcase, safe='')}/items/{quote(cat.reference, safe='')}"
                   "/similar?" + urlencode({"limit": 10, "descriptor": cat.descriptor}))
    return [
        {"id": "label", "title": "Label patches", "href": f"{base}/annotate", "type": "text/html",
         "description": "Active learning: mark a few patches positive or negative, run a round, accept the "
                        "predicted patches as annotations."},
        {"id": "similar", "title": "Search similar patches", "href": similar, "type": "application/json",
         "description": (f"The patches of {cat.showcase} nearest to {cat.reference} by their {cat.descriptor} "
                         "descriptor (STAC similarity extension)." if cat.reference else
                         "Load patches first: similarity search needs descriptors.")},
        {"id": "viewer", "title": "Overlay posts on imagery", "href": f"{base}/viewer", "type": "text/html",
         "description": "Scenes and patch outlines on a map, with the posts a fused text, time and place "
                        "search ranks."},
        {"id": "qgis", "title": "Open in QGIS", "href": f"{base}/ogc", "type": "application/json",
         "description": "Add the OGC API Features connection and load patches, annotations and posts as layers."},
    ]


def home_document(base: str, cat: Catalogue) -> dict[str, Any]:
    """The home page as JSON (``/?f=json``): links, what is loaded, tasks and command lines.

    Args:
        base: Public base URL (no trailing slash).
        cat: What is loaded.
    """
    links = [{"title": t, "rel": r, "href": base + h, "type": ty, "description": d} for t, r, h, ty, d in _LINKS]
    collections = [{**asdict(c), "bbox": list(c.bbox) if c.bbox else None,
                    "href": f"{base}/stac/collections/{quote(c.id, safe='')}"} for c in cat.collections]
    posts = [{**asdict(p), "bbox": list(p.bbox) if p.bbox else None} for p in cat.posts]
    return {"title": "EOFusion", "base_url": base, "links": links, "collections": collections, "posts": posts,
            "tasks": tasks(base, cat), "start": start_lines(base, cat)}


def public_base(request: Request) -> str:
    """The base URL clients use (no trailing slash).

    ``server.hrefs.PublicBase`` writes the public base (``EOFUSION_PUBLIC_URL``, else what the proxy forwarded)
    into the scope, so Starlette's ``base_url`` is it.
    """
    return str(request.base_url).rstrip("/")


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return request.query_params.get("f") == "json" or ("text/html" not in accept and "json" in accept)


def _static_links() -> str:
    """The fixed links as list items, relative to the home page (right under any proxy prefix): a client
    without JavaScript (curl, a text browser) still finds every API. Built from the constants of ``_LINKS``
    only, never from data; the page's script replaces them with the full list."""
    return "".join(f'<li><a href="{html.escape(h.lstrip("/"), quote=True)}">{html.escape(t)}</a></li>'
                   for t, _r, h, _ty, _d in _LINKS)


_HOME_HTML = (STATIC_DIR / "home.html").read_text().replace(
    '<ul id="links" class="links"></ul>', f'<ul id="links" class="links">{_static_links()}</ul>')


@router.get("/", response_model=None)
async def landing(request: Request) -> Response:
    """The home page; HTML for browsers, JSON (``?f=json`` or ``Accept: application/json``) otherwise."""
    if not _wants_json(request):
        return Response(_HOME_HTML, media_type=HTML, headers=NO_CACHE)
    cat = await run_in_threadpool(read_catalogue, request.app.state.database_url)
    return JSONResponse(home_document(public_base(request), cat), headers=NO_CACHE)


add_asset_route(router, ASSET_PREFIX, STATIC_DIR, _MEDIA_TYPES)


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    """Whether the database answers and the schema is in place."""
    url = request.app.state.database_url

    def check() -> dict[str, Any]:
        with connect(url) as conn:
            return {"status": "ok", **server_versions(conn)}

    try:
        return JSONResponse(await run_in_threadpool(check))
    except Exception as err:  # any failure means unhealthy; say which
        return JSONResponse({"status": "error", "description": str(err)}, status_code=503)
