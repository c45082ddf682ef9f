"""OGC API (Features + Processes) through pygeoapi, configured from EOFusion's settings.

pygeoapi reads its configuration and OpenAPI document from files named by environment
variables when ``pygeoapi.starlette_app`` is imported, so :func:`build_ogc_app` writes both
into the data directory first and imports the app afterwards.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import yaml
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from catalog.db import url_parts
from eofusion.config import Limits
from server.errors import internal_error_handler
from server.ogc_logging import install_client_error_filter
from server.openapi_local import localise

OGC_PREFIX = "/ogc"

# Layers: (id, title, description, view, id column, time column, keywords)
FEATURE_LAYERS: list[tuple[str, str, str, str, str, str | None, list[str]]] = [
    ("scenes", "Scenes", "Sentinel-1/2 scenes ingested into EOFusion (footprints).",
     "scene_features", "fid", "datetime", ["Sentinel-2", "Sentinel-1", "scenes"]),
    ("patches", "Patches", "Image patches on the coarse-to-fine grids, with ground truth where known.",
     "patch_features", "fid", "datetime", ["patches", "early fusion"]),
    ("annotations", "Semantic annotations",
     "Labels accepted from active-learning sessions, and predicted by their models (apply-model; property kind).",
     "annotation_features", "fid", "datetime", ["annotations", "labels"]),
    ("tweets", "Tweets", "Geolocated social-media posts (geotagged or geoparsed).",
     "tweet_features", "fid", "datetime", ["tweets", "social media"]),
]

PROCESSES: dict[str, str] = {
    "list-labels": "plugins.labels.ListLabelsProcessor",
    "create-label": "plugins.labels.CreateLabelProcessor",
    "active-learning-round": "plugins.active.ActiveLearningRoundProcessor",
    "accept-annotations": "plugins.active.AcceptAnnotationsProcessor",
    "apply-model": "plugins.apply.ApplyModelProcessor",
    "validate": "plugins.validation.ValidateProcessor",
    "label-cleaning": "plugins.validation.LabelCleaningProcessor",
    "export": "plugins.export.ExportProcessor",
    "late-fusion-search": "plugins.social.LateFusionSearchProcessor",
    "tweets-near-patches": "plugins.social.TweetsNearPatchesProcessor",
    "train-hashing": "plugins.hashing.TrainHashingProcessor",
    "train-text2patch": "plugins.hashing.TrainText2PatchProcessor",
    "text-search": "plugins.hashing.TextSearchProcessor",
}


def process_class(process_id: str) -> type[Any]:
    """The processor class of a process id of :data:`PROCESSES` (imported)."""
    module, name = PROCESSES[process_id].rsplit(".", 1)
    cls: type[Any] = getattr(importlib.import_module(module), name)
    return cls


def anonymous_processes() -> dict[str, bool]:
    """Each process id and whether it runs without an API key: only declared read-only and light ones.

    Derived from the processes' declarations (``read_only``, ``cost``): a process that declares nothing
    needs a key (see :func:`plugins.base.open_to_anonymous`).
    """
    from plugins.base import open_to_anonymous

    return {pid: open_to_anonymous(process_class(pid)) for pid in PROCESSES}


def pygeoapi_config(public_url: str, database_url: str, files_dir: Path, limits: Limits | None = None,
                    photos_dir: Path | None = None) -> dict[str, Any]:
    """The pygeoapi configuration for one EOFusion server.

    Args:
        public_url: Base URL of the whole server as clients see it (no trailing slash).
        database_url: libpq URL of the catalogue.
        files_dir: Where processes write files (reports, exports), served under ``/files``.
        limits: Bounds of process inputs (text length, list lengths, depths); the defaults without it.
        photos_dir: The only folder late-fusion query photos (``image.href``) are read from; without it,
            ``query-photos`` beside ``files_dir``.
    """
    parts = url_parts(database_url)
    connection = {"host": parts["host"], "port": int(parts["port"]), "dbname": parts["dbname"],
                  "user": parts["user"], "password": parts["password"], "search_path": ["eofusion", "public"]}
    resources: dict[str, Any] = {}
    for lid, title, description, view, id_field, time_field, keywords in FEATURE_LAYERS:
        provider: dict[str, Any] = {
            "type": "feature",
            "name": "plugins.features.PgFeatureProvider",
            "data": connection,
            "id_field": id_field,
            "table": view,
            "geom_field": "geometry",
        }
        if time_field:
            provider["time_field"] = time_field
        resources[lid] = {
            "type": "collection",
            "title": title,
            "description": description,
            "keywords": keywords,
            "links": [],
            "extents": {"spatial": {"bbox": [-180, -90, 180, 90],
                                    "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}},
            "providers": [provider],
        }
    bounds = dataclasses.asdict(limits or Limits())
    photos = photos_dir or files_dir.parent / "query-photos"
    for pid, cls in PROCESSES.items():
        resources[pid] = {"type": "process", "processor": {"name": cls, "database_url": database_url,
                                                           "files_dir": str(files_dir), "limits": bounds,
                                                           "photos_dir": str(photos)}}
    return {
        "server": {
            "bind": {"host": "127.0.0.1", "port": 0},
            "url": public_url.rstrip("/") + OGC_PREFIX,
            "mimetype": "application/json; charset=UTF-8",
            "encoding": "utf-8",
            "languages": ["en-US"],
            "cors": True,
            "pretty_print": False,
            "limits": {"default_items": 10, "max_items": 10000, "on_exceed": "throttle"},
            "map": {"url": "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
                    "attribution": "OpenStreetMap"},
            "manager": {"name": "plugins.jobs.PgJobManager", "connection": database_url, "output_dir": None},
        },
        "logging": {"level": "ERROR"},
        "metadata": {
            "identification": {
                "title": {"en": "EOFusion OGC API"},
                "description": {"en": "Patches, annotations and tweets as OGC API Features; "
                                      "active learning and fusion as OGC API Processes."},
                "keywords": {"en": ["Earth observation", "Sentinel", "STAC", "active learning"]},
                "keywords_type": "theme",
                "terms_of_service": "https://opensource.org/licenses/MIT",
                "url": public_url,
            },
            "license": {"name": "MIT", "url": "https://opensource.org/licenses/MIT"},
            "provider": {"name": "EOFusion", "url": public_url},
            "contact": {"name": "EOFusion", "position": "maintainers", "email": "eofusion@localhost",
                        "url": public_url, "role": "pointOfContact"},
        },
        "resources": resources,
    }


def build_ogc_app(public_url: str, database_url: str, work_dir: Path, files_dir: Path,
                  limits: Limits | None = None) -> ASGIApp:
    """Write pygeoapi's configuration and OpenAPI document, then import its Starlette app.

    Args:
        limits: Request bounds (the largest ``offset`` of an items page); the defaults without it.
    """
    from pygeoapi.openapi import get_oas

    work_dir.mkdir(parents=True, exist_ok=True)
    cfg = pygeoapi_config(public_url, database_url, files_dir, limits)
    cfg_file = work_dir / "pygeoapi-config.yml"
    oas_file = work_dir / "pygeoapi-openapi.yml"
    # The configuration holds the database password: readable by the owner only.
    cfg_file.touch(mode=0o600, exist_ok=True)
    cfg_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
    oas = localise(get_oas(cfg, fail_on_invalid_collection=False))
    oas_file.write_text(yaml.safe_dump(oas, sort_keys=False))
    os.environ["PYGEOAPI_CONFIG"] = str(cfg_file)
    os.environ["PYGEOAPI_OPENAPI"] = str(oas_file)
    name = "pygeoapi.starlette_app"
    module = importlib.reload(sys.modules[name]) if name in sys.modules else importlib.import_module(name)
    # A bug inside pygeoapi answers in our error shape with the request id, not Starlette's plain-text 500.
    module.APP.add_exception_handler(Exception, internal_error_handler)
    install_client_error_filter()
    return ExecutionBodyGuard(ItemsQueryGuard(module.APP, layer_columns(database_url), limits or Limits()))


# Query parameters OGC API - Features (parts 1-3) and pygeoapi understand on /items.
ITEMS_PARAMETERS = frozenset({
    "f", "lang", "limit", "offset", "bbox", "bbox-crs", "datetime", "properties", "sortby", "skipGeometry",
    "crs", "filter", "filter-lang", "filter-crs", "q", "resulttype",
})
_ITEMS_PATH = re.compile(r"^/collections/(?P<cid>[^/]+)/items/?$")


def layer_columns(database_url: str) -> dict[str, frozenset[str]]:
    """Property names of each feature layer (usable as ``name=value`` filters)."""
    from catalog.db import connect

    out: dict[str, frozenset[str]] = {}
    with connect(database_url) as conn:
        for lid, _t, _d, view, *_ in FEATURE_LAYERS:
            rows = conn.execute("SELECT column_name FROM information_schema.columns "
                                "WHERE table_schema = 'eofusion' AND table_name = %s", (view,)).fetchall()
            out[lid] = frozenset(r[0] for r in rows)
    return out


class ItemsQueryGuard:
    """Answer 400 to query parameters of ``/collections/{id}/items`` that pygeoapi would mishandle.

    OGC API - Features requires a 400 for an unknown parameter (most often a typo that would
    otherwise silently return unfiltered data); pygeoapi ignores them. It also fails with a 500 on
    an empty ``sortby`` term and passes any ``offset`` to the database (a huge one overflows it, a
    large one makes the database walk and drop that many rows), so both are checked here too.
    """

    def __init__(self, app: ASGIApp, columns: dict[str, frozenset[str]], limits: Limits | None = None) -> None:
        self.app = app
        self.columns = columns
        self.limits = limits or Limits()

    def problem(self, collection: str, query: list[tuple[str, str]]) -> str | None:
        """Why the items query of ``collection`` is refused, or None when pygeoapi may run it."""
        names = {k for k, _ in query}
        unknown = sorted(names - ITEMS_PARAMETERS - self.columns[collection])
        if unknown:
            return f"unknown query parameter(s): {', '.join(unknown)}"
        for key, value in query:
            if key == "sortby":
                terms = [t.strip() for t in value.split(",")]
                if any(t.lstrip("+-") == "" for t in terms):
                    return f"sortby: {value!r} holds an empty term (expected e.g. 'datetime,-fid')"
            elif key == "offset" and _is_ascii_int(value) and int(value) > self.limits.page_offset:
                return f"offset: {value} is beyond the largest offset ({self.limits.page_offset})"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "POST"):
            m = _ITEMS_PATH.match(_sub_path(scope))
            if m and m.group("cid") in self.columns:
                if scope["method"] == "POST" and not any(k.lower() == b"content-type" for k, _ in scope["headers"]):
                    # pygeoapi answers such a POST with nothing at all (a 500).
                    return await _refuse(send, 415, "a POST to items searches with a CQL2 JSON body: send it "
                                                    "with Content-Type: application/json")
                query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
                problem = self.problem(m.group("cid"), query)
                if problem:
                    return await _refuse(send, 400, problem)
        await self.app(scope, receive, send)


async def _refuse(send: Send, status: int, description: str) -> None:
    # pygeoapi's exception shape: the OGC exception code, also as "type".
    body = json.dumps({"code": "InvalidParameterValue", "type": "InvalidParameterValue",
                       "description": description}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _is_ascii_int(value: str) -> bool:
    # str.isdigit() also holds for '²' and other digits int() refuses.
    text = value.strip()
    return text.isascii() and text.isdigit()


def _sub_path(scope: Scope) -> str:
    # Inside a Starlette Mount the path still carries the prefix; root_path holds it.
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


_EXECUTION_PATH = re.compile(r"^/processes/[^/]+/execution/?$")


def execution_body_problem(body: bytes) -> str | None:
    """Why pygeoapi could not take ``body`` as a process execution request, or None if it can.

    pygeoapi 0.21 (``api/processes.py``) calls ``.get`` on the parsed body and indexes ``subscriber``:
    a JSON array, string, number or null there, or bytes that are not UTF-8, were answered 500. An empty
    body or one that is not JSON at all pygeoapi answers 400 itself.
    """
    if not body.strip():
        return None
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        return "the execution request is not UTF-8 text"
    except (ValueError, RecursionError):
        return "the execution request is not valid JSON"
    if not isinstance(data, dict):
        return f"the execution request must be a JSON object with 'inputs', got a JSON {_json_kind(data)}"
    for key in ("inputs", "outputs", "subscriber"):
        if key in data and not isinstance(data[key], dict):
            return f"'{key}' of the execution request must be a JSON object, got a JSON {_json_kind(data[key])}"
    if "response" in data and data["response"] not in ("raw", "document"):
        return "'response' of the execution request must be 'raw' or 'document'"
    if "subscriber" in data and not isinstance(data["subscriber"].get("successUri"), str):
        return "'subscriber' of the execution request needs a 'successUri' string"
    return None


def _json_kind(value: Any) -> str:
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


class ExecutionBodyGuard:
    """Answer 400 (InvalidParameterValue) to a process execution request that is not a JSON object.

    The body is read whole (its size is bounded before this by the server's body limit) and handed on
    unchanged when it is acceptable.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not _EXECUTION_PATH.match(_sub_path(scope)):
            await self.app(scope, receive, send)
            return
        read: list[Message] = []
        while True:
            message = await receive()
            read.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        if read[-1]["type"] == "http.request":
            problem = execution_body_problem(b"".join(m.get("body", b"") for m in read))
            if problem:
                body = json.dumps({"type": "InvalidParameterValue", "code": "InvalidParameterValue",
                                   "description": problem}).encode()
                await send({"type": "http.response.start", "status": 400,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return

        async def replay() -> Message:
            return read.pop(0) if read else await receive()

        await self.app(scope, replay, send)
