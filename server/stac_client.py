"""EOFusion's STAC core client: stac-fastapi-pgstac's, plus what pgstac drops from items."""

from __future__ import annotations

from typing import Any

from stac_fastapi.pgstac.core import CoreCrudClient
from starlette.requests import Request


class EOFusionCoreClient(CoreCrudClient):
    """stac-fastapi-pgstac's client with the similarity extension, and ``datetime: null`` restored
    (pgstac strips null properties, but STAC requires ``datetime``, null for an interval item)."""

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
