"""EOFusion's STAC core client: stac-fastapi-pgstac's, plus what pgstac drops from items."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

import orjson
from stac_fastapi.pgstac.core import CoreCrudClient
from starlette.requests import Request

from eofusion.errors import InvalidInput

#: GET parameters that stac-fastapi parses as JSON (without catching a parse error: a 500) and uses as objects.
JSON_PARAMETERS = ("query", "intersects")


def check_json_parameters(params: dict[str, Any]) -> None:
    """Refuse a ``query`` or ``intersects`` GET parameter that is not a JSON object.

    Raises:
        InvalidInput: naming the parameter and the reason.
    """
    for name in JSON_PARAMETERS:
        raw = params.get(name)
        if not raw:
            continue
        try:
            value = orjson.loads(unquote_plus(raw))
        except orjson.JSONDecodeError as err:
            raise InvalidInput(f"{name} must be a JSON object: {err}") from None
        if not isinstance(value, dict):
            raise InvalidInput(f"{name} must be a JSON object, got {type(value).__name__}")
    fields = params.get("fields")
    if fields and any(not f or f in ("+", "-") for f in fields):
        raise InvalidInput("fields holds an empty name")


class EOFusionCoreClient(CoreCrudClient):
    """stac-fastapi-pgstac's client with the similarity extension, and ``datetime: null`` restored
    (pgstac strips null properties, but STAC requires ``datetime``, null for an interval item)."""

    async def get_search(self, request: Request, **kwargs: Any) -> Any:  # type: ignore[override]
        check_json_parameters(kwargs)
        return await super().get_search(request, **kwargs)

    async def item_collection(self, collection_id: str, request: Request,  # type: ignore[override]
                              **kwargs: Any) -> Any:
        check_json_parameters(kwargs)
        return await super().item_collection(collection_id, request, **kwargs)

    async def all_collections(self, request: Request, **kwargs: Any) -> Any:  # type: ignore[override]
        check_json_parameters(kwargs)
        return await super().all_collections(request, **kwargs)

    async def post_search(self, search_request: Any, request: Request, **kwargs: Any) -> Any:  # type: ignore[override]
        if getattr(search_request, "similar_to", None) is not None:
            from server.similarity import similar_search

            return await similar_search(self, search_request, request)
        return await super().post_search(search_request, request, **kwargs)

    async def _search_base(self, search_request: Any, request: Request) -> Any:  # type: ignore[override]
        collection = await super()._search_base(search_request, request)
        for feature in collection.get("features", ()):
            props = feature.get("properties")
            if props is not None and "datetime" not in props and "start_datetime" in props:
                props["datetime"] = None
        return collection
