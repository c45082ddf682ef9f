"""Tiles, previews and crops of scene COGs and STAC items (titiler.core factories).

Only files under the installation's data directory are served: a tile server that opens
any path it is given would disclose every raster on the machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import attr
import pystac
from fastapi import APIRouter, HTTPException, Query, Request
from rio_tiler.io import STACReader
from titiler.core.factory import MultiBaseTilerFactory, TilerFactory

from catalog.items import SCENES_PREFIX


def cog_path_dependency(allowed_root: Path):  # type: ignore[no-untyped-def]
    """A path dependency accepting only existing files below ``allowed_root``."""
    root = allowed_root.resolve()

    def dataset_path(url: Annotated[str, Query(description="Path of a COG in the EOFusion data directory")]) -> str:
        path = Path(url[7:] if url.startswith("file://") else url)
        resolved = (root / path).resolve() if not path.is_absolute() else path.resolve()
        if not resolved.is_relative_to(root):
            raise HTTPException(status_code=403, detail="only rasters of this EOFusion installation are served")
        if not resolved.is_file():
            raise HTTPException(status_code=404, detail=f"no such raster: {url}")
        return str(resolved)

    return dataset_path


@attr.s
class CatalogItemReader(STACReader):
    """A STAC reader whose input is the item JSON itself (read from pgstac), not a URL."""

    def __attrs_post_init__(self) -> None:
        if isinstance(self.input, dict):
            self.item = pystac.Item.from_dict(self.input)
            self.input = None
        super().__attrs_post_init__()


async def catalog_item(
    request: Request,
    collection: Annotated[str, Query(description="STAC collection id")],
    item: Annotated[str, Query(description="STAC item id")],
) -> dict[str, Any]:
    """Fetch an item from pgstac (the STAC API's own read pool)."""
    pool = request.app.state.readpool
    async with pool.acquire() as conn:
        found = await conn.fetchval("SELECT pgstac.get_item($1, $2)", item, collection)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no item {item!r} in collection {collection!r}")
    doc: dict[str, Any] = found if isinstance(found, dict) else json.loads(found)
    # Scene COGs are published as /scenes/... URLs; read them from the data directory directly.
    scenes_dir = request.app.state.eofusion_settings.scenes_dir
    for asset in doc.get("assets", {}).values():
        href = asset.get("href", "")
        if href.startswith(SCENES_PREFIX + "/"):
            asset["href"] = str(scenes_dir / href[len(SCENES_PREFIX) + 1:])
    return doc


def tiles_router(data_dir: Path) -> APIRouter:
    """The ``/tiles`` router: ``/cog/...`` for COG files, ``/stac/...`` for catalogue items."""
    router = APIRouter()
    cog = TilerFactory(path_dependency=cog_path_dependency(data_dir), router_prefix="/tiles/cog")
    stac = MultiBaseTilerFactory(reader=CatalogItemReader, path_dependency=catalog_item,
                                 router_prefix="/tiles/stac")
    router.include_router(cog.router, prefix="/cog", tags=["Cloud Optimized GeoTIFF"])
    router.include_router(stac.router, prefix="/stac", tags=["STAC items"])
    return router
