"""The one ASGI app: STAC API at /stac, OGC API at /ogc, tiles at /tiles, pages and /healthz.

stac-fastapi writes links from the request's base URL, so the STAC app is the top-level app
(with ``prefix_path="/stac"``) and the other parts are added to it; a mounted app's lifespan
does not run, so this lifespan opens the pgstac pools for everyone, and the similarity pool
(``app.state.similarity_pool``: connections tuned for one-round-trip similarity searches, see
``catalog.similarity.tuned_pool``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

from fastapi import FastAPI
from stac_fastapi.pgstac.app import instantiate_api
from stac_fastapi.pgstac.config import PostgresSettings, ServerSettings
from stac_fastapi.pgstac.config import Settings as StacSettings
from stac_fastapi.pgstac.db import close_db_connection, connect_to_db
from stac_fastapi.pgstac.extensions import FreeTextExtension
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from catalog.db import database_url, url_parts
from catalog.hrefs import SCENES_PREFIX
from catalog.similarity import tuned_pool
from eofusion import __version__
from eofusion.config import Settings
from plugins.jobs import JobRuntime, install_runtime, uninstall_runtime
from server import annotate, pages
from server.auth import APIKeyMiddleware
from server.cql2_post import search_filter_extension
from server.demo_key import ProxiedMarker
from server.errors import BBoxGuard, JsonBodyGuard, install_error_handlers, install_outermost
from server.hrefs import OgcHrefs, PublicBase
from server.jobs_http import JobResponseHints, use_context_executor
from server.json_text import JsonTextGuard
from server.labels_api import labels_router
from server.limits import BodyLimit
from server.memory import tune_allocator
from server.ogc import OGC_PREFIX, anonymous_processes, build_ogc_app
from server.security import SecurityHeaders, SecurityPolicies
from server.similarity import SimilarityExtension
from server.stac_client import EOFusionCoreClient, EOFusionExtensions
from server.static_pages import common_router
from server.tiles import tiles_router
from server.viewer import router as viewer_router

STAC_PREFIX = "/stac"
TILES_PREFIX = "/tiles"


@dataclass(frozen=True)
class ServerConfig:
    """What one server process needs beyond :class:`Settings`.

    Attributes:
        public_url: Base URL clients use (pygeoapi's links).
        demo_key: The key ``eofusion demo`` generated, handed to the annotation page by
            ``/annotate/demo-key``; only set when the demo serves on a loopback address (None: route answers 404).
    """

    public_url: str = "http://127.0.0.1:8000"
    demo_key: str | None = None


def postgres_settings(url: str) -> PostgresSettings:
    """pgstac pool settings for a libpq URL (pgstac wants host, port, user, password apart)."""
    p = url_parts(url)
    return PostgresSettings(
        pguser=p["user"], pgpassword=p["password"], pghost=p["host"], pgport=int(p["port"]),
        pgdatabase=p["dbname"], server_settings=ServerSettings(application_name="eofusion-stac"),
    )


class PrefixRootAlias:
    """Serve ``/ogc`` as ``/ogc/`` instead of redirecting: clients append paths to the URL they were given."""

    def __init__(self, app: ASGIApp, prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in self.prefixes:
            scope = dict(scope, path=scope["path"] + "/", raw_path=(scope["path"] + "/").encode())
        await self.app(scope, receive, send)


def create_app(settings: Settings, config: ServerConfig | None = None) -> FastAPI:
    """Build the EOFusion ASGI application.

    Args:
        settings: Installation settings (database, data directory, API keys).
        config: Server settings (public URL used by pygeoapi for its links).
    """
    config = config or ServerConfig()
    # GDAL's block cache defaults to 5% of the RAM (1.2 GB here) and stays allocated once tiles filled it:
    # the server's memory grew by half a gigabyte under mixed load (bench/load.py). A process-wide GDAL setting.
    os.environ.setdefault("GDAL_CACHEMAX", str(settings.limits.tile_cache_mb))
    # Before any server thread exists: freed tile buffers otherwise stay resident in 16 arenas (server/memory.py).
    tune_allocator(settings.limits)
    db_url = database_url(settings)
    pg = postgres_settings(db_url)
    stac_settings = StacSettings(
        prefix_path=STAC_PREFIX,
        enable_transactions_extensions=True,
        stac_fastapi_title="EOFusion",
        stac_fastapi_description="Sentinel-1/2 patches, annotations and scenes, searchable by metadata.",
        stac_fastapi_landing_id="eofusion",
        stac_fastapi_version=__version__,
        openapi_url=f"{STAC_PREFIX}/api",
        docs_url=f"{STAC_PREFIX}/api.html",
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await connect_to_db(app, postgres_settings=pg, add_write_connection_pool=True)
        # Similarity rankings get their own pool: its connections keep the search settings for the session.
        app.state.similarity_pool = await tuned_pool(
            pg.connection_string, min_size=pg.db_min_conn_size, max_size=pg.db_max_conn_size,
            max_queries=pg.db_max_queries, max_inactive_connection_lifetime=pg.db_max_inactive_conn_lifetime)
        # pygeoapi's API calls see the request's principal; this process runs and owns its jobs (heartbeat,
        # bounded workers) and fails the jobs of servers that stopped beating.
        use_context_executor(asyncio.get_running_loop())
        job_runtime = JobRuntime(db_url, settings.limits)
        job_runtime.start()
        install_runtime(job_runtime)
        try:
            yield
        finally:
            uninstall_runtime(job_runtime)
            job_runtime.stop()
            await app.state.similarity_pool.close()
            await close_db_connection(app)

    # Our transactions clients: they refuse bodies holding inf/NaN, which pgstac would store as null.
    # POST searches also take CQL2 text filters (rustac's command line posts them as typed).
    extensions = EOFusionExtensions(settings=stac_settings, search_map={
        "free_text": FreeTextExtension(), "similarity": SimilarityExtension(),
        "filter": search_filter_extension()}, extra_map={})
    api = instantiate_api(client=EOFusionCoreClient, extensions=extensions, lifespan=lifespan, settings=stac_settings)
    api.client.landing_page_id = "eofusion"  # the client's default comes from the environment
    app = api.app
    app.state.eofusion_stac_client = api.client
    app.state.eofusion_settings = settings
    app.state.database_url = db_url
    app.state.demo_key = config.demo_key

    install_error_handlers(app)
    app.include_router(tiles_router(settings.scenes_dir, settings.limits), prefix=TILES_PREFIX)
    settings.scenes_dir.mkdir(parents=True, exist_ok=True)
    # Scene COGs for clients that read them directly (GDAL /vsicurl/, QGIS): range requests work.
    app.mount(SCENES_PREFIX, StaticFiles(directory=settings.scenes_dir), name="scenes")
    app.include_router(labels_router(db_url))
    app.include_router(pages.router)
    app.include_router(viewer_router)
    app.include_router(annotate.router)
    app.include_router(common_router)
    files_dir = settings.data_dir / "files"
    files_dir.mkdir(parents=True, exist_ok=True)
    # Files that processes write (validation reports, exports), downloadable as they are.
    app.mount("/files", StaticFiles(directory=files_dir), name="files")
    # OGC answers (features, process outputs, jobs) get absolute hrefs under the request's public base.
    app.mount(OGC_PREFIX, OgcHrefs(JobResponseHints(build_ogc_app(config.public_url, db_url, settings.data_dir / "ogc",
                                                                  files_dir, limits=settings.limits)),
                                   configured=config.public_url))
    # Innermost of ours: every URL built further in (stac-fastapi's links, asset hrefs) uses the public base.
    app.add_middleware(PublicBase, public_url=settings.public_url)
    # Outside PublicBase, which consumes forwarding headers: the demo's key is never handed to a proxied request.
    app.add_middleware(ProxiedMarker)
    app.add_middleware(PrefixRootAlias, prefixes=(OGC_PREFIX,))
    app.add_middleware(BBoxGuard)
    app.add_middleware(JsonBodyGuard)
    app.add_middleware(JsonTextGuard)
    # Inside the key check: a keyed item write may send a larger body (limits.bulk_body_bytes).
    app.add_middleware(BodyLimit, limits=settings.limits)
    app.add_middleware(APIKeyMiddleware, keys=settings.api_keys, processes=anonymous_processes())
    # Around everything, RequestIds' 500 included: every answer carries the security headers.
    install_outermost(app, partial(SecurityHeaders, policies=SecurityPolicies(
        docs_paths=frozenset({f"{STAC_PREFIX}/api.html", f"{OGC_PREFIX}/openapi"}),
        download_prefixes=(SCENES_PREFIX, "/files"))))
    return app
