"""EOFusion's STAC core client: stac-fastapi-pgstac's, plus what pgstac drops from items."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import unquote_plus

import attr
import orjson
from fastapi import Depends, Path
from pydantic import BaseModel, TypeAdapter, ValidationError
from stac_fastapi.api.models import JSONResponse
from stac_fastapi.extensions import BulkTransactionExtension, TransactionExtension
from stac_fastapi.pgstac.core import CoreCrudClient
from stac_fastapi.pgstac.models.extensions import Extensions
from stac_fastapi.pgstac.transactions import BulkTransactionsClient, TransactionsClient
from stac_fastapi.types.extension import ApiExtension
from stac_pydantic import Collection, Item
from stac_pydantic.links import Link
from starlette.requests import Request

from catalog.hrefs import STAC, stored
from eofusion.errors import InvalidInput
from server.hrefs import absolute_assets, public_base

#: GET parameters that stac-fastapi parses as JSON (without catching a parse error: a 500) and uses as objects.
JSON_PARAMETERS = ("query", "intersects")


def check_json_parameters(params: dict[str, Any]) -> None:
    """Refuse a ``query`` or ``intersects`` GET parameter that is not a JSON object (an empty one is dropped).

    Raises:
        InvalidInput: naming the parameter and the reason.
    """
    for name in JSON_PARAMETERS:
        raw = params.get(name)
        if raw == "":
            params[name] = None  # ``query=`` is no query (pgstac's collection search would parse "" and fail)
            continue
        if not raw:
            continue
        try:
            value = orjson.loads(unquote_plus(raw))
        except orjson.JSONDecodeError as err:
            raise InvalidInput(f"{name} must be a JSON object: {err}") from None
        if not isinstance(value, dict):
            raise InvalidInput(f"{name} must be a JSON object, got {type(value).__name__}")
        check_json_values(value, name)
    fields = params.get("fields")
    if fields and any(not f or f in ("+", "-") for f in fields):
        raise InvalidInput("fields holds an empty name")


def non_finite_path(value: Any, path: str = "") -> str | None:
    """Where a JSON value holds a number JSON cannot carry (Python's parser reads ``NaN``, ``1e400`` as inf)."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path or "body"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list | tuple) \
        else ()
    for key, sub in items:
        found = non_finite_path(sub, f"{path}.{key}" if path else str(key))
        if found:
            return found
    return None


def nested_collection_path(value: Any, path: str = "") -> str | None:
    """Where a JSON value holds a GeometryCollection inside a GeometryCollection.

    GeoJSON (RFC 7946) advises against nesting them and PostGIS cannot write one back as GeoJSON: a stored item
    with one made every read of it, its collection's pages and searches answer 500.
    """
    if isinstance(value, dict):
        if value.get("type") == "GeometryCollection" and any(
                isinstance(g, dict) and g.get("type") == "GeometryCollection" for g in value.get("geometries") or ()):
            return path or "geometry"
        items: Any = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, sub in items:
        found = nested_collection_path(sub, f"{path}.{key}" if path else str(key))
        if found:
            return found
    return None


def check_json_values(value: Any, name: str = "") -> None:
    """Refuse numbers JSON cannot carry and nested GeometryCollections anywhere in a request's JSON.

    Raises:
        InvalidInput: naming where.
    """
    where = non_finite_path(value, name)
    if where:
        raise InvalidInput(f"{where} is not a finite number")
    where = nested_collection_path(value, name)
    if where:
        raise InvalidInput(f"{where}: a GeometryCollection inside a GeometryCollection is not supported")


def _page_limit(request: Request) -> int:
    limit: int = request.app.state.eofusion_settings.limits.page_limit
    return limit


def _cropped(request: Request, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with ``limit`` at most ``limits.page_limit``: the STAC API returns the maximum, not an error."""
    limit = params.get("limit")
    return {**params, "limit": min(limit, _page_limit(request))} if limit is not None else params


class EOFusionCoreClient(CoreCrudClient):
    """stac-fastapi-pgstac's client with the similarity extension, ``datetime: null`` restored
    (pgstac strips null properties, but STAC requires ``datetime``, null for an interval item), and absolute
    asset hrefs under the request's public base (stored hrefs are relative: :mod:`catalog.hrefs`).

    Every item answer (an item, an items page, a search, a similarity search) passes :meth:`_search_base`;
    stored links are resolved by stac-fastapi against the same base.
    """

    async def get_search(self, request: Request, **kwargs: Any) -> Any:  # type: ignore[override]
        check_json_parameters(kwargs)
        return await super().get_search(request, **_cropped(request, kwargs))

    async def item_collection(self, collection_id: str, request: Request,  # type: ignore[override]
                              **kwargs: Any) -> Any:
        check_json_parameters(kwargs)
        return await super().item_collection(collection_id, request, **_cropped(request, kwargs))

    async def all_collections(self, request: Request, **kwargs: Any) -> Any:  # type: ignore[override]
        check_json_parameters(kwargs)
        return absolute_assets(await super().all_collections(request, **kwargs), public_base(request))

    async def get_collection(self, collection_id: str, request: Request,  # type: ignore[override]
                             **kwargs: Any) -> Any:
        return absolute_assets(await super().get_collection(collection_id, request, **kwargs), public_base(request))

    async def post_search(self, search_request: Any, request: Request, **kwargs: Any) -> Any:  # type: ignore[override]
        # A bbox or coordinate of inf/NaN passes stac-pydantic's range checks and breaks the answer's JSON.
        check_json_values(search_request.model_dump(mode="python", exclude_none=True))
        page_limit = _page_limit(request)
        if search_request.limit is not None and search_request.limit > page_limit:
            search_request = search_request.model_copy(update={"limit": page_limit})
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
        return absolute_assets(collection, public_base(request))


def check_finite_body(values: dict[str, Any], *positional: Any) -> None:
    """Refuse a write whose body holds inf or NaN: pgstac would store it as null (a point at 0).

    Args:
        values: The endpoint's keyword arguments (pydantic models of the body, path strings, the request).
        positional: Its positional arguments (stac-fastapi passes a body model alone positionally).

    Raises:
        InvalidInput: naming where the number is.
    """
    for name, value in [*(("body", v) for v in positional), *values.items()]:
        if isinstance(value, list):
            value = [v.model_dump(mode="python") if isinstance(v, BaseModel) else v for v in value]
        elif isinstance(value, BaseModel):
            value = value.model_dump(mode="python")
        elif not isinstance(value, dict):
            continue
        check_json_values(value, name)


def check_patch_shapes(model: type[BaseModel], patch: Any) -> None:
    """Refuse a patch that gives a top-level member of a STAC object the wrong shape (e.g. ``links`` an object).

    pgstac writes a patched collection without validating it, then fails building its links: a 500, with the
    broken document already stored. Members set by a merge patch, or by ``add``/``replace`` operations on a
    top-level path or one entry of ``links``, are validated against stac-pydantic's model before pgstac runs.

    Raises:
        InvalidInput: naming the member and the reason.
    """
    values: list[tuple[str, Any, bool]] = []  # (member, value, whether the value is one entry of a list)
    if isinstance(patch, list):
        for op in patch:
            if getattr(op, "op", None) in ("add", "replace"):
                parts = str(op.path).strip("/").split("/")
                if len(parts) == 1:
                    values.append((parts[0], op.value, False))
                elif len(parts) == 2 and parts[0] == "links":
                    values.append(("links", op.value, True))
    elif isinstance(patch, BaseModel):
        values = [(k, v, False) for k, v in patch.model_dump(mode="json", exclude_unset=True).items() if v is not None]
    for name, value, entry in values:
        field = model.model_fields.get(name)
        if field is None:
            continue
        annotation: Any = Link if entry else field.annotation
        try:
            TypeAdapter(annotation).validate_python(value)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(x) for x in (name, *first.get("loc", ())))
            raise InvalidInput(f"{where}: {first.get('msg')}") from None


def _request_of(values: dict[str, Any], positional: tuple[Any, ...]) -> Request | None:
    found = values.get("request")
    if isinstance(found, Request):
        return found
    return next((v for v in positional if isinstance(v, Request)), None)


def store_written_hrefs(values: dict[str, Any], *positional: Any) -> None:
    """Asset and link hrefs of written items that name this server (under its public base) become the stored
    form, so a client that writes back an item it read stores no host either (in place, on the body models)."""
    request = _request_of(values, positional)
    if request is None:
        return
    bases = [public_base(request)]

    def fix(model: Any) -> None:
        if isinstance(model, BaseModel):
            for feature in getattr(model, "features", None) or ():
                fix(feature)
            assets = getattr(model, "assets", None)
            if isinstance(assets, dict):
                for asset in assets.values():
                    href = getattr(asset, "href", None)
                    if isinstance(href, str):
                        asset.href = stored(bases, href)
            links = getattr(model, "links", None)
            for link in getattr(links, "root", links) or ():  # stac-pydantic's Links is a RootModel of a list
                href = getattr(link, "href", None)
                for base in bases:  # our own STAC links: relative to the STAC API root, as stored links are
                    if isinstance(href, str) and href.startswith(f"{base}/{STAC}/"):
                        link.href = href[len(f"{base}/{STAC}/"):] or "./"
            items = getattr(model, "items", None)
            if isinstance(items, dict):
                for sub in items.values():
                    fix(sub)

    for value in [*positional, *values.values()]:
        fix(value)


def _answered(result: Any, values: dict[str, Any], positional: tuple[Any, ...]) -> Any:
    request = _request_of(values, positional)
    return absolute_assets(result, public_base(request)) if request is not None else result


@attr.s
class EOFusionTransactionsClient(TransactionsClient):
    """pgstac's transactions, refusing bodies with numbers JSON cannot carry (see :func:`check_finite_body`);
    items are stored with relative hrefs and answered with absolute ones, like every other answer."""

    async def create_item(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        check_finite_body(kwargs, *args)
        store_written_hrefs(kwargs, *args)
        return _answered(await super().create_item(*args, **kwargs), kwargs, args)

    async def update_item(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        check_finite_body(kwargs, *args)
        store_written_hrefs(kwargs, *args)
        return _answered(await super().update_item(*args, **kwargs), kwargs, args)

    async def patch_item(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        check_finite_body(kwargs, *args)
        check_patch_shapes(Item, kwargs.get("patch", args[2] if len(args) > 2 else None))
        return _answered(await super().patch_item(*args, **kwargs), kwargs, args)

    async def create_collection(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        check_finite_body(kwargs, *args)
        return await super().create_collection(*args, **kwargs)

    async def update_collection(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        check_finite_body(kwargs, *args)
        return await super().update_collection(*args, **kwargs)

    async def patch_collection(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        check_finite_body(kwargs, *args)
        check_patch_shapes(Collection, kwargs.get("patch", args[1] if len(args) > 1 else None))
        return await super().patch_collection(*args, **kwargs)


@attr.s
class EOFusionBulkTransactionsClient(BulkTransactionsClient):
    """pgstac's bulk item load, refusing bodies with numbers JSON cannot carry."""

    async def bulk_item_insert(self, items: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        check_finite_body({}, items)
        store_written_hrefs(kwargs, items)
        return await super().bulk_item_insert(items, **kwargs)


@dataclass
class EOFusionExtensions(Extensions):
    """stac-fastapi-pgstac's extensions with :class:`EOFusionTransactionsClient` and its bulk sibling."""

    @property
    def transaction(self) -> list[ApiExtension]:
        """The transaction extensions, on our clients (when transactions are enabled)."""
        if not self.settings.enable_transactions_extensions:
            return []
        return [TransactionExtension(client=EOFusionTransactionsClient(), settings=self.settings,
                                     response_class=JSONResponse),
                # Its endpoint reads collection_id from the path without declaring it: the dependency declares it
                # in the OpenAPI document, so clients (and fuzzers) generated from it can call the route.
                BulkTransactionExtension(client=EOFusionBulkTransactionsClient(),
                                         route_dependencies=[Depends(collection_path_parameter)])]


def collection_path_parameter(collection_id: Annotated[str, Path(description="Collection ID")]) -> None:
    """Declares the ``collection_id`` path parameter of a route (its value is read from the path)."""
