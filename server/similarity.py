"""The EOFusion similarity extension of the STAC API.

``POST /search`` accepts ``similar_to`` (an item, a raw vector, or positive/negative items) and
``descriptor`` (fused / s1 / s2, or ``hash``) together with every other search parameter; results are
ordered by distance, which each item carries as ``eofusion:distance``. ``GET
/collections/{collectionId}/items/{itemId}/similar`` is the simple case.

``descriptor: "hash"`` searches the collection's active deep-hashing model (train-hashing process): the
Hamming top candidates are re-ranked with the full descriptor the model was trained on, and results also
carry ``eofusion:hamming``. ``q_semantic`` (free text) ranks by the collection's text-to-patch model
(train-text2patch process) under the same filters.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import attr
import numpy as np
from fastapi import APIRouter, FastAPI, Query, Request
from pydantic import BaseModel, Field, model_validator
from stac_fastapi.pgstac.db import translate_pgstac_errors

from catalog import hashing, similarity
from catalog import text2patch as text_search
from eofusion.config import Limits
from eofusion.errors import InvalidInput, NotFound
from eofusion.pipeline.scene import DESCRIPTOR_DIMS
from server.hrefs import public_base

SIMILARITY_CONFORMANCE = "https://w3id.org/eofusion/stac-api/similarity/v1.0.0"
DescriptorKind = Literal["fused", "s1", "s2", "hash"]
TOKEN_PREFIX = "similar:"
#: A similarity paging token: the prefix and an offset in ASCII digits (``str.isdigit`` also takes '²').
_TOKEN = re.compile(r"similar:([0-9]+)")


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


def _semantic_marker(data: dict[str, Any]) -> SimilarTo | None:
    """``similar_to``'s default: an empty marker when ``q_semantic`` is given, else ``None``.

    stac-fastapi merges the extensions' fields into its search model but not their validators, and its client
    hands a search to the extension only when ``similar_to`` is set: this default (computed from the fields
    validated before it) routes ``q_semantic`` searches here without touching the client.
    """
    return SimilarTo.model_construct() if data.get("q_semantic") is not None else None


class SimilarityPostRequest(BaseModel):
    """Fields the extension adds to ``POST /search`` (``q_semantic`` is declared first: see _semantic_marker)."""

    q_semantic: str | None = Field(
        default=None, min_length=1,
        description="Free text ('sea', 'dense forest'): rank the patches of one collection (give it in "
                    "'collections') with its text-to-patch model (train-text2patch process); at most "
                    "EOFUSION_LIMIT_TEXT_CHARS characters (default 2000)")
    similar_to: SimilarTo | None = Field(default_factory=_semantic_marker,
                                         description="Rank results by similarity to this")
    descriptor: DescriptorKind | None = Field(
        default=None, description="Descriptor compared: fused (S1+S2), s1 (SAR WLD) or s2 (multispectral), or "
                                  "hash (the collection's deep-hashing model: Hamming search re-ranked with the "
                                  "descriptor it was trained on); default: the richest the reference item has "
                                  "(fused, s2, s1)")
    rerank_depth: int | None = Field(
        default=None, ge=1,
        description="With descriptor 'hash': how many Hamming candidates are re-ranked together with the full "
                    f"descriptor (default {hashing.RERANK_DEPTH}): the results are the Hamming order in blocks of "
                    "this size, each block in descriptor order. Fewer is faster, more is closer to the float "
                    "search. At most EOFUSION_LIMIT_DEPTH (default 5000)")


@dataclass(frozen=True)
class Ranked:
    """What a ranking returns: the neighbours, properties common to all results and per-result extras."""

    found: list[Any]  # objects with collection, item_id, distance
    properties: dict[str, Any]
    per_item: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


def _one_collection(body: dict[str, Any], spec: dict[str, Any], what: str) -> str:
    """The collection whose learned model ranks a search: the one in ``collections``, else the reference's."""
    cols = body.get("collections") or []
    if len(cols) > 1:
        raise similarity.SimilarityError(f"{what} searches one collection at a time (with that collection's model): "
                                         f"give a single collection in 'collections', got {len(cols)}")
    if cols:
        return str(cols[0])
    ref = spec.get("collection") or (spec.get("positive") or [{}])[0].get("collection")
    if ref:
        return str(ref)
    raise similarity.SimilarityError(f"{what} needs 'collections' with the collection whose model ranks the results")


async def _hash_ranking(conn: Any, body: dict[str, Any], spec: dict[str, Any], limit: int, offset: int,
                        depth: int) -> Ranked:
    """Hamming search with the collection's active hashing model, its top ``depth`` re-ranked with the full
    descriptor."""
    collection = _one_collection(body, spec, "descriptor 'hash'")
    stored = await hashing.active_hash_model_async(conn, collection)
    if stored is None:
        raise similarity.SimilarityError(f"collection {collection!r} has no hashing model: train one with the "
                                         "train-hashing process (POST /ogc/processes/train-hashing/execution)")
    model = await hashing.load_hasher(conn, stored)
    query = await similarity.query_vector(conn, stored.descriptor, spec)
    code = model.encode_text(query.astype(np.float32))[0]
    where = await similarity.where_clause(conn, {"collections": [collection], **body})
    found = await hashing.hamming_nearest(conn, stored, code, query, where, limit, offset, depth=depth)
    return Ranked(found, {"eofusion:descriptor": "hash", "eofusion:hash_descriptor": stored.descriptor,
                          "eofusion:model": stored.stac_item_id or str(stored.id),
                          "eofusion:rerank_depth": depth},
                  {(n.collection, n.item_id): {"eofusion:hamming": n.hamming} for n in found})


async def _descriptor_ranking(conn: Any, body: dict[str, Any], spec: dict[str, Any], kind: str | None, limit: int,
                              offset: int) -> Ranked:
    """Rank by a stored descriptor (``kind``; default: the richest the reference item has)."""
    if kind is None:
        ref = spec.get("item") and (spec["collection"], spec["item"])
        ref = ref or (spec.get("positive") and (spec["positive"][0]["collection"], spec["positive"][0]["item"]))
        kind = await similarity.default_kind(conn, *ref) if ref else None
    if kind is None:
        raise similarity.SimilarityError("give descriptor (fused, s1, s2 or hash) with a raw vector")
    query = await similarity.query_vector(conn, kind, spec)
    where = await similarity.where_clause(conn, body)
    return Ranked(await similarity.nearest(conn, kind, query, where, limit, offset), {"eofusion:descriptor": kind})


async def _text_ranking(conn: Any, body: dict[str, Any], text: str, limit: int, offset: int) -> Ranked:
    """Rank by the collection's text-to-patch model."""
    collection = _one_collection(body, {}, "q_semantic")
    stored = await text_search.active_text2patch_model_async(conn, collection)
    if stored is None:
        raise similarity.SimilarityError(f"collection {collection!r} has no text-to-patch model: train one with the "
                                         "train-text2patch process (POST /ogc/processes/train-text2patch/execution)")
    model = await text_search.load_text2patch(conn, stored)
    # The sentence encoder is CPU-bound (and loads once, for seconds): keep it off the event loop.
    query = await asyncio.to_thread(text_search.embed_text, model, text)
    where = await similarity.where_clause(conn, {"collections": [collection], **body})
    found = await text_search.text_nearest(conn, stored, query, where, limit, offset)
    return Ranked(found, {"eofusion:descriptor": "text2patch", "eofusion:model": stored.stac_item_id or str(stored.id)})


def page_offset(token: str | None, limits: Limits) -> int:
    """The offset a similarity paging token (``similar:`` + ASCII digits, from a next link) stands for.

    Raises:
        InvalidInput: any other token, or an offset beyond ``limits.page_offset``.
    """
    if not token:
        return 0
    match = _TOKEN.fullmatch(token)
    if match is None:
        shown = token if len(token) <= 40 else token[:40] + "..."
        raise InvalidInput(f"token: a similarity search pages with the tokens of its next links "
                           f"('{TOKEN_PREFIX}' and an offset), got {shown!r}")
    digits = match.group(1).lstrip("0") or "0"
    if len(digits) > len(str(limits.page_offset)) or int(digits) > limits.page_offset:
        raise InvalidInput(f"token: similarity results are paged up to offset {limits.page_offset} "
                           "(EOFUSION_LIMIT_PAGE_OFFSET); narrow the search with filters instead")
    return int(digits)


def check_search(search_request: Any, limits: Limits) -> None:
    """Refuse a similarity search beyond the server's limits, before it costs a query.

    Checks the text length, ``rerank_depth``, the raw vector's dimension and the lengths of the ``positive`` /
    ``negative`` lists (``limit`` is cropped to ``limits.page_limit`` instead, as the STAC API asks).

    Raises:
        InvalidInput: naming the parameter, its bound and the setting that raises it.
    """
    text = getattr(search_request, "q_semantic", None)
    if text is not None and len(text) > limits.text_chars:
        raise InvalidInput(f"q_semantic has {len(text)} characters; this server takes at most {limits.text_chars} "
                           "(EOFUSION_LIMIT_TEXT_CHARS)")
    depth = getattr(search_request, "rerank_depth", None)
    if depth is not None and depth > limits.depth:
        raise InvalidInput(f"rerank_depth {depth} is more than {limits.depth} (EOFUSION_LIMIT_DEPTH)")
    spec = search_request.similar_to
    if spec is None:
        return
    for name in ("positive", "negative"):
        refs = getattr(spec, name, None) or []
        if len(refs) > limits.reference_items:
            raise InvalidInput(f"similar_to.{name} has {len(refs)} items; at most {limits.reference_items} "
                               "(EOFUSION_LIMIT_REFERENCE_ITEMS)")
    if spec.vector is not None:
        kind = search_request.descriptor
        if kind is None:
            raise InvalidInput("give descriptor (fused, s1, s2 or hash) with a raw vector")
        if kind != "hash":
            similarity.check_vector(kind, spec.vector)
        elif len(spec.vector) not in DESCRIPTOR_DIMS.values():
            # The hashing model's descriptor is known only from the database; no descriptor has this length.
            dims = ", ".join(f"{k} {v}" for k, v in DESCRIPTOR_DIMS.items())
            raise InvalidInput(f"similar_to.vector has {len(spec.vector)} values: a vector has the dimension of a "
                               f"descriptor ({dims})")


async def similar_search(client: Any, search_request: Any, request: Request) -> dict[str, Any]:
    """Run a search with ``similar_to`` or ``q_semantic``: rank under the search's filters, then hydrate.

    Raises:
        InvalidInput: (400) a bad vector, token, unknown reference item or descriptor, a request beyond the
            server's limits, or a collection without the learned model the search needs.
    """
    limits: Limits = request.app.state.eofusion_settings.limits
    text = getattr(search_request, "q_semantic", None)
    if text is not None and ("similar_to" in search_request.model_fields_set or search_request.descriptor):
        raise InvalidInput("q_semantic ranks with the collection's text-to-patch model: "
                           "give it without similar_to and descriptor")
    depth = getattr(search_request, "rerank_depth", None)
    if depth is not None and search_request.descriptor != "hash":
        raise InvalidInput("rerank_depth applies to descriptor 'hash' only")
    check_search(search_request, limits)
    offset = page_offset(search_request.token, limits)
    spec = search_request.similar_to.model_dump()
    body = json.loads(search_request.model_dump_json(exclude_none=True, by_alias=True))
    if text is not None:
        body.pop("similar_to", None)  # the routing marker, not the client's
    body.pop("token", None)
    # STAC: a limit above the server's maximum returns the maximum, not an error.
    limit = min(int(search_request.limit or 10), limits.page_limit)
    try:
        # Every step here reads: the whole ranking runs on one connection of the similarity pool, whose session
        # holds the search settings (catalog.similarity.TunedConnection: the HNSW query is one round trip). pgstac
        # errors become HTTP errors as on pgstac's own pool.
        with translate_pgstac_errors():
            async with request.app.state.similarity_pool.acquire() as conn:
                kind = search_request.descriptor
                if text is not None:
                    ranked = await _text_ranking(conn, body, text, limit, offset)
                elif kind == "hash":
                    ranked = await _hash_ranking(conn, body, spec, limit, offset, depth or hashing.RERANK_DEPTH)
                else:
                    ranked = await _descriptor_ranking(conn, body, spec, kind, limit, offset)
    except hashing.HashingError as err:
        raise InvalidInput(str(err)) from err
    found = ranked.found
    base = public_base(request)  # EOFUSION_PUBLIC_URL, or the base the request came through (its proxy)
    links: list[dict[str, Any]] = [{"rel": "root", "type": "application/json", "href": f"{base}/stac/"},
                                   {"rel": "self", "type": "application/geo+json", "href": f"{base}/stac/search"}]
    if not found:  # nothing passes the filters: nothing to hydrate
        return {"type": "FeatureCollection", "features": [], "links": links, "numberReturned": 0}
    hydrate = search_request.model_copy(update={
        "ids": [n.item_id for n in found], "collections": sorted({n.collection for n in found}),
        "limit": len(found), "bbox": None, "intersects": None, "datetime": None,
        "filter": None, "similar_to": None, "q_semantic": None, "token": None})
    page = await client._search_base(hydrate, request=request)
    by_key = {(f.get("collection"), f["id"]): f for f in page.get("features", [])}
    features = []
    for n in found:
        feature = by_key.get((n.collection, n.item_id))
        if feature is not None:
            props = feature.setdefault("properties", {})
            props["eofusion:distance"] = n.distance
            props.update(ranked.properties)
            props.update(ranked.per_item.get((n.collection, n.item_id), {}))
            features.append(feature)
    if search_request.sortby:
        # The page holds the nearest items; sortby orders them (pgstac hydrated them in that order).
        features = [f for f in page.get("features", []) if "eofusion:distance" in f.get("properties", {})]
    if len(found) == limit and offset + limit <= limits.page_offset:
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
            try:
                search = client.pgstac_search_model(
                    similar_to=SimilarTo(collection=collection_id, item=item_id), descriptor=descriptor,
                    limit=limit, collections=(collections.split(",") if collections else [collection_id]),
                    bbox=[float(v) for v in bbox.split(",")] if bbox else None, datetime=datetime,
                    token=token, **({"filter": _cql2_json(filter), "filter-lang": "cql2-json"} if filter else {}))
            except InvalidInput:
                raise
            except ValueError as err:  # pydantic's ValidationError (a bad datetime...) or a bbox that is no number
                raise InvalidInput(f"invalid parameters: {err}") from err
            try:
                return await similar_search(client, search, request)
            except similarity.UnknownItem as err:
                # The item of the path: the resource this route names does not exist.
                raise NotFound(str(err)) from err

        app.include_router(router)


def _cql2_json(text: str) -> dict[str, Any]:
    import cql2

    try:
        return dict(cql2.Expr(text).to_json())
    except Exception as err:  # cql2 raises its own error types
        raise InvalidInput(f"invalid CQL2 filter: {err}") from err
