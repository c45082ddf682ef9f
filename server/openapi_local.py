"""Make pygeoapi's OpenAPI document self-contained.

pygeoapi points ``$ref``s at schemas.opengis.net. Clients that resolve them (QGIS reads the
``limit`` and ``datetime`` parameters, test suites read every parameter) then need the
internet; here each external reference becomes a local component with the standard's content.
"""

from __future__ import annotations

import re
from typing import Any

# Parameters as OGC API - Features - Part 1 (17-069r4) defines them.
_PARAMETERS: dict[str, dict[str, Any]] = {
    "featureId": {"name": "featureId", "in": "path", "description": "local identifier of a feature",
                  "required": True, "schema": {"type": "string"}},
    "datetime": {
        "name": "datetime", "in": "query", "required": False, "style": "form", "explode": False,
        "description": "Either a date-time or an interval, open or closed (RFC 3339). Only features whose "
                       "temporal geometry intersects the value are selected.",
        "schema": {"type": "string"},
    },
    "sortby": {
        "name": "sortby", "in": "query", "required": False, "style": "form", "explode": False,
        "description": "Comma-separated properties to sort by; prefix '-' for descending order.",
        "schema": {"type": "array", "minItems": 1,
                   "items": {"type": "string", "pattern": r"[+|-]?[A-Za-z_].*"}},
    },
}

_GENERIC_SCHEMA = {"type": "object", "additionalProperties": True}


def _response(description: str, media: str = "application/json") -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": _GENERIC_SCHEMA}}}


_RESPONSES: dict[str, dict[str, Any]] = {
    "InvalidParameter": _response("A query parameter has an invalid value."),
    "ServerError": _response("A server error occurred."),
    "NotFound": _response("The requested resource does not exist on the server."),
    "Features": _response("The features of the collection (GeoJSON FeatureCollection).", "application/geo+json"),
    "Feature": _response("A feature (GeoJSON Feature).", "application/geo+json"),
    "Collection": _response("Information about the feature collection."),
    "LandingPage": _response("The landing page: links to the API capabilities."),
    "ProcessList": _response("Information about the available processes."),
    "ExecuteAsync": {"description": "Started asynchronous execution: a job was created.",
                     "headers": {"Location": {"schema": {"type": "string"},
                                              "description": "URL of the job status"}},
                     "content": {"application/json": {"schema": _GENERIC_SCHEMA}}},
}

_REF = re.compile(r"^https?://[^#]*?/(?P<name>[\w\-]+)(?:\.yaml|\.json)?(?:#/components/(?P<kind>\w+)/(?P<frag>\w+))?$")


def _local(ref: str, components: dict[str, dict[str, Any]]) -> str | None:
    m = _REF.match(ref)
    if not m:
        return None
    name = m.group("frag") or m.group("name")
    kind = m.group("kind") or ("parameters" if "/parameters/" in ref else
                               "responses" if "/responses/" in ref else "schemas")
    if kind == "parameters":
        if name not in _PARAMETERS:
            return None
        body = _PARAMETERS[name]
    elif kind == "responses":
        body = _RESPONSES.get(name, _response(name))
    else:
        body = _GENERIC_SCHEMA
    target = components.setdefault(kind, {})
    local_name = name if name not in target or target[name] == body else f"ogc-{name}"
    target.setdefault(local_name, body)
    return f"#/components/{kind}/{local_name}"


def localise(document: dict[str, Any]) -> dict[str, Any]:
    """Replace external ``$ref``s of an OpenAPI document by local components (in place)."""
    components: dict[str, dict[str, Any]] = document.setdefault("components", {})

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(("http://", "https://")):
                local = _local(ref, components)
                if local is not None:
                    node["$ref"] = local
            for value in list(node.values()):
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk({k: v for k, v in document.items() if k != "components"})
    walk(components)
    return document
