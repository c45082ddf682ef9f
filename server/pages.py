"""The landing page at ``/`` and ``/healthz``."""

from __future__ import annotations

import html
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from catalog.db import connect

router = APIRouter(include_in_schema=False)

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


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get("/")
async def landing(request: Request) -> Any:
    """Links to every part of the server; HTML for browsers, JSON otherwise."""
    base = _base(request)
    links = [{"title": t, "rel": r, "href": base + h, "type": ty, "description": d} for t, r, h, ty, d in _LINKS]
    accept = request.headers.get("accept", "")
    if request.query_params.get("f") == "json" or ("text/html" not in accept and "json" in accept):
        return JSONResponse({"title": "EOFusion", "links": links})
    rows = "\n".join(
        f'<li><a href="{html.escape(link["href"])}">{html.escape(link["title"])}</a> '
        f'<small>{html.escape(link["description"])}</small></li>' for link in links
    )
    return HTMLResponse(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>EOFusion</title></head>"
        "<body><h1>EOFusion</h1><p>Search server for Earth-observation imagery: Sentinel-1/2 patches, "
        f"active learning and social media.</p><ul>{rows}</ul></body></html>"
    )


@router.get("/healthz")
async def healthz(request: Request) -> JSONResponse:
    """Whether the database answers and the schema is in place."""
    url = request.app.state.database_url

    def check() -> dict[str, Any]:
        with connect(url) as conn:
            row = conn.execute("SELECT pgstac.get_version()").fetchone()
            pgstac = row[0] if row else None
            vector = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
            postgis = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'postgis'").fetchone()
        return {"status": "ok", "pgstac": pgstac, "pgvector": vector and vector[0], "postgis": postgis and postgis[0]}

    try:
        return JSONResponse(await run_in_threadpool(check))
    except Exception as err:  # any failure means unhealthy; say which
        return JSONResponse({"status": "error", "description": str(err)}, status_code=503)
