"""The EOFusion similarity extension of the STAC API.

``POST /search`` accepts ``similar_to`` (an item, a raw vector, or positive/negative items) and
``descriptor`` (fused / s1 / s2) together with every other search parameter; results are ordered
by distance, which each item carries as ``eofusion:distance``. ``GET
/collections/{collectionId}/items/{itemId}/similar`` is the simple case.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import attr
from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from pydantic import BaseModel, Field, model_validator

from catalog import similarity

SIMILARITY_CONFORMANCE = "https://w3id.org/eofusion/stac-api/similarity/v1.0.0"
DescriptorKind = Literal["fused", "s1", "s2"]
TOKEN_PREFIX = "similar:"


class ItemRef(BaseModel):
    """A catalogue item."""

    collection: str
    item: str


class SimilarTo(BaseModel):
    """What results must resemble: exactly one of an item, a vector, or positive (and negative) items."""

    collection: str | None = None
    item: str | None = None
    vector: list[float] | None = None
    positive: list[ItemRef] | None = None
    negative: list[ItemRef] | None = None

    @model_validator(mode="after")
    def one_form(self) -> SimilarTo:
        forms = [self.item is not None, self.vector is not None, bool(self.positive)]
        if sum(forms) != 1:
            raise ValueError("similar_to takes exactly one of: collection + item, vector, positive (+ negative)")
        if self.item is not None and not self.collection:
            raise ValueError("similar_to.item needs similar_to.collection")
        if self.negative and not self.positive:
            raise ValueError("similar_to.negative needs positive items")
        return self


class SimilarityPostRequest(BaseModel):
    """Fields the extension adds to ``POST /search``."""

    similar_to: SimilarTo | None = Field(default=None, description="Rank results by similarity to this")
    descriptor: DescriptorKind | None = Field(
        default=None, description="Descriptor compared: fused (S1+S2), s1 (SAR WLD) or s2 (multispectral); "
                                  "default: the richest the reference item has (fused, s2, s1)")


async def similar_search(client: Any, search_request: Any, request: Request) -> dict[str, Any]:
    """Run a search with ``similar_to``: rank by distance under the search's filters, then hydrate.

    Raises:
        HTTPException: 400 with a clear message for a bad vector, unknown item or descriptor.
    """
    spec = search_request.similar_to.model_dump()
    body = json.loads(search_request.model_dump_json(exclude_none=True, by_alias=True))
    token = body.pop("token", None) or ""
    offset = int(token[len(TOKEN_PREFIX):]) if token.startswith(TOKEN_PREFIX) and token[len(TOKEN_PREFIX):].isdigit() \
        else 0
    limit = int(search_request.limit or 10)
    try:
        async with request.app.state.get_connection(request, "r") as conn:
            kind = search_request.descriptor
            if kind is None:
                ref = spec.get("item") and (spec["collection"], spec["item"])
                ref = ref or (spec.get("positive") and (spec["positive"][0]["collection"], spec["positive"][0]["item"]))
                kind = await similarity.default_kind(conn, *ref) if ref else None
            if kind is None:
                raise similarity.SimilarityError("give descriptor (fused, s1 or s2) with a raw vector")
            query = await similarity.query_vector(conn, kind, spec)
            where = await similarity.where_clause(conn, body)
            found = await similarity.nearest(conn, kind, query, where, limit, offset)
    except similarity.SimilarityError as err:
        raise HTTPException(status_code=400, detail=str(err)) from err
    hydrate = search_request.model_copy(update={
        "ids": [n.item_id for n in found] or ["\x00no-match"], "collections": sorted({n.collection for n in found})
        or None, "limit": max(1, len(found)), "bbox": None, "intersects": None, "datetime": None,
        "filter": None, "similar_to": None, "token": None})
    page = await client._search_base(hydrate, request=request)
    by_key = {(f.get("collection"), f["id"]): f for f in page.get("features", [])}
    features = []
    for n in found:
        feature = by_key.get((n.collection, n.item_id))
        if feature is not None:
            feature.setdefault("properties", {})["eofusion:distance"] = n.distance
            feature["properties"]["eofusion:descriptor"] = kind
            features.append(feature)
    base = str(request.base_url).rstrip("/")
    links: list[dict[str, Any]] = [{"rel": "root", "type": "application/json", "href": f"{base}/stac/"},
             {"rel": "self", "type": "application/geo+json", "href": f"{base}/stac/search"}]
    if len(found) == limit:
        links.append({"rel": "next", "type": "application/geo+json", "href": f"{base}/stac/search", "method": "POST",
                      "body": {**body, "token": f"{TOKEN_PREFIX}{offset + limit}"}, "merge": False})
    return {"type": "FeatureCollection", "features": features, "links": links, "numberReturned": len(features)}


@attr.s
class SimilarityExtension:
    """Registers the similarity conformance class and the ``/similar`` route (the POST fields come from
    :class:`SimilarityPostRequest`, merged into the search model by stac-fastapi)."""

    GET: Any = None
    POST: type[BaseModel] = SimilarityPostRequest
    conformance_classes: list[str] = attr.ib(factory=lambda: [SIMILARITY_CONFORMANCE])
    schema_href: str | None = attr.ib(default=None)

    def get_request_model(self, verb: str = "GET") -> Any:
        """The request model of a verb (stac-fastapi's extension protocol)."""
        return getattr(self, verb)

    def register(self, app: FastAPI) -> None:
        """Add ``GET /stac/collections/{collectionId}/items/{itemId}/similar``."""
        router = APIRouter()

        @router.get("/stac/collections/{collection_id}/items/{item_id}/similar", tags=["Similarity"],
                    summary="Items most similar to this one")
        async def similar(request: Request, collection_id: str, item_id: str,
                          descriptor: Annotated[DescriptorKind | None, Query()] = None,
                          limit: Annotated[int, Query(ge=1, le=1000)] = 10,
                          collections: Annotated[str | None, Query(description="Comma-separated; default: "
                                                                   "the item's collection")] = None,
                          bbox: Annotated[str | None, Query()] = None,
                          datetime: Annotated[str | None, Query()] = None,
                          filter: Annotated[str | None, Query(description="CQL2 text")] = None,
                          token: Annotated[str | None, Query()] = None) -> Any:
            client = request.app.state.eofusion_stac_client
            search = client.pgstac_search_model(
                similar_to=SimilarTo(collection=collection_id, item=item_id), descriptor=descriptor, limit=limit,
                collections=(collections.split(",") if collections else [collection_id]),
                bbox=[float(v) for v in bbox.split(",")] if bbox else None, datetime=datetime,
                token=token, **({"filter": _cql2_json(filter), "filter-lang": "cql2-json"} if filter else {}))
            return await similar_search(client, search, request)

        app.include_router(router)


def _cql2_json(text: str) -> dict[str, Any]:
    import cql2

    try:
        return dict(cql2.Expr(text).to_json())
    except Exception as err:  # cql2 raises its own error types
        raise HTTPException(status_code=400, detail=f"invalid CQL2 filter: {err}") from err
