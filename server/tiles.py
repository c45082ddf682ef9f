"""Tiles, previews and crops of scene COGs and STAC items (titiler.core factories).

Only scene COGs are read: ``/tiles/cog`` takes a path inside the scenes folder, and ``/tiles/stac``
reads an item's asset only when its href names a file there (the stored ``scenes/...`` href of the
catalogue, see :mod:`catalog.hrefs`; the ``/scenes/...`` form of catalogues before migration 0020; or such a
path). The rest of the data folder (the embedded cluster, its password file,
pygeoapi's configuration) and anything GDAL could open beyond it (``/vsicurl/``, ``http://``, other
virtual file systems) is never opened, and a refused reference answers exactly like a missing file.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any

import attr
import pystac
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from morecantile import TileMatrixSets
from morecantile import tms as default_tms
from rio_tiler.io import BaseReader, STACReader
from rio_tiler.types import AssetInfo, AssetType
from titiler.core.algorithm import BaseAlgorithm
from titiler.core.factory import MultiBaseTilerFactory, TilerFactory

from catalog.hrefs import scene_path
from eofusion.config import Limits
from eofusion.errors import InvalidInput, NotFound
from eofusion.paths import inside
from server.tiles_errors import TilesRoute
from server.tiles_limits import bounded_part_params, tile_size_guard
from server.tiles_reader import BoundedReader
from server.tiles_render import render_tile

#: Suffixes of the COGs the scenes folder holds.
COG_SUFFIXES = (".tif", ".tiff")
#: The tile matrix sets served: the web map's and the plain WGS84 grid.
TILE_MATRIX_SETS = ("WebMercatorQuad", "WorldCRS84Quad")
#: ``scheme:`` at the start of a reference (``http:``, ``file:``, ``s3:``...).
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def scene_file(scenes_dir: Path, ref: str, *, relative: bool = True) -> Path:
    """The scene COG a client's reference names, confined to ``scenes_dir``.

    A reference is the stored href of an item's asset (``scenes/<collection>/<file>``, or ``/scenes/...``
    as catalogues stored it before migration 0020 and clients of ``/tiles/cog`` send it), an absolute
    path inside the scenes folder or (with ``relative``) a path relative to it. Never a URL, not even
    one of this server: the tiler opens files, it does not fetch. Symbolic links are followed before
    the check, so a link out of the folder is refused.

    Raises:
        NotFound: the reference names no COG file inside the scenes folder: missing, outside, a
            URL or GDAL virtual path, or a file that is not a COG. The message is the same for all,
            so probing reveals nothing about the rest of the machine.
    """
    missing = NotFound(f"no scene COG {ref!r}")
    if not ref or "\x00" in ref or _SCHEME.match(ref) or ref.lower().startswith("/vsi"):
        raise missing
    candidates: list[str] = []
    named = scene_path(ref)
    if named is not None:
        candidates.append(named)
    if os.path.isabs(ref):
        for root in {scenes_dir, scenes_dir.resolve()}:
            if ref.startswith(str(root) + "/"):
                candidates.append(ref[len(str(root)) + 1:])
                break
    elif relative:
        candidates.append(ref)  # relative to the scenes folder (after the stored form, if it is one)
    for rel in candidates:
        try:
            path = inside(scenes_dir, rel, "scene COG")
        except NotFound:
            continue
        if path.suffix.lower() in COG_SUFFIXES and path.is_file():
            return path
    raise missing


def cog_path_dependency(scenes_dir: Path):  # type: ignore[no-untyped-def]
    """The ``url`` dependency of ``/tiles/cog``: a scene COG, as :func:`scene_file` confines it."""

    def dataset_path(url: Annotated[str, Query(
            description="A scene COG: its /scenes/... URL, or its path in (or relative to) the scenes folder")],
    ) -> str:
        return str(scene_file(scenes_dir, url))

    return dataset_path


def catalog_reader(scenes_dir: Path) -> type[STACReader]:
    """A STAC reader over item JSON from pgstac whose assets are read only from ``scenes_dir``."""

    @attr.s
    class CatalogItemReader(STACReader):
        """A STAC reader whose input is the item JSON itself (read from pgstac), not a URL."""

        reader: type[BaseReader] = attr.ib(default=BoundedReader)

        def __attrs_post_init__(self) -> None:
            if isinstance(self.input, dict):
                try:
                    self.item = pystac.Item.from_dict(self.input)
                except (pystac.STACError, ValueError, TypeError, KeyError) as exc:
                    raise InvalidInput(f"item {self.input.get('id')!r} is not a STAC item rasters can be "
                                       f"read from: {exc}") from exc
                self.input = None
            super().__attrs_post_init__()

        def _get_asset_info(self, asset: AssetType) -> AssetInfo:
            name = asset if isinstance(asset, str) else asset.get("name", "")
            try:
                info = super()._get_asset_info(asset)
            except (ValueError, TypeError, KeyError) as exc:
                # A `bands` option the asset's metadata cannot answer, or metadata rio-tiler cannot parse.
                raise InvalidInput(f"asset {name!r}: {exc}") from exc
            # The stored href as it is: pystac would resolve it against a stored self link (an item written
            # back by a client keeps one), which is no file of the scenes folder.
            stored_asset = self.item.assets.get(name) if self.item is not None else None
            href = stored_asset.href if stored_asset is not None and name else str(info["url"])
            try:
                info["url"] = str(scene_file(scenes_dir, href, relative=False))
            except NotFound:
                item_id = self.item.id if self.item is not None else None
                raise NotFound(f"asset {name!r} of item {item_id!r} names no scene COG of this server") from None
            # GDAL options come from the server, not from stored item metadata.
            info.pop("env", None)
            return info

    return CatalogItemReader


async def catalog_item(
    request: Request,
    collection: Annotated[str, Query(description="STAC collection id")],
    item: Annotated[str, Query(description="STAC item id")],
) -> dict[str, Any]:
    """Fetch an item from pgstac (the STAC API's own read pool); unknown ids are a 404."""
    if "\x00" in collection or "\x00" in item:
        raise HTTPException(status_code=404, detail=f"no item {item!r} in collection {collection!r}")
    pool = request.app.state.readpool
    async with pool.acquire() as conn:
        found = await conn.fetchval("SELECT pgstac.get_item($1, $2)", item, collection)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no item {item!r} in collection {collection!r}")
    doc: dict[str, Any] = found if isinstance(found, dict) else json.loads(found)
    return doc


def no_algorithm() -> BaseAlgorithm | None:
    """No post-processing algorithms: nothing here uses them, and each is parameters to get wrong."""
    return None


def tiles_router(scenes_dir: Path, limits: Limits) -> APIRouter:
    """The ``/tiles`` router: ``/cog/...`` for scene COGs, ``/stac/...`` for catalogue items.

    Args:
        scenes_dir: The only folder rasters are read from (``Settings.scenes_dir``).
        limits: Request bounds; ``tile_px`` bounds every tile, preview and crop side.
    """
    tms = TileMatrixSets({name: default_tms.get(name) for name in TILE_MATRIX_SETS})
    common: dict[str, Any] = {
        "supported_tms": tms,
        "process_dependency": no_algorithm,
        "img_part_dependency": bounded_part_params(limits.tile_px),
        "render_func": render_tile,
        "add_viewer": False,  # titiler's map.html loads scripts from CDNs; /viewer is the map
    }

    def factory_router() -> APIRouter:
        return APIRouter(route_class=TilesRoute, dependencies=[Depends(tile_size_guard(limits.tile_px))])

    cog = TilerFactory(router=factory_router(), reader=BoundedReader, path_dependency=cog_path_dependency(scenes_dir),
                       router_prefix="/tiles/cog", **common)
    stac = MultiBaseTilerFactory(router=factory_router(), reader=catalog_reader(scenes_dir),
                                 path_dependency=catalog_item, router_prefix="/tiles/stac", **common)
    router = APIRouter()
    router.include_router(cog.router, prefix="/cog", tags=["Cloud Optimized GeoTIFF"])
    router.include_router(stac.router, prefix="/stac", tags=["STAC items"])
    return router
