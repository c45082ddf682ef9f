"""Publishing a Sentinel-2 scene: its COG and its STAC item, in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from catalog import items as stac_items
from catalog.db import connect
from catalog.load import upsert_collection, upsert_items
from eofusion.io.cog import write_cog
from eofusion.readers.errors import InputDataError
from eofusion.readers.sentinel2 import S2_10M_BANDS, read_s2_scene


@dataclass
class PublishedScene:
    """Where a published scene went."""

    collection: str
    item_id: str
    cog: Path


def publish_s2_scene(database_url: str, s2_path: Path, collection_id: str, scenes_dir: Path,
                     start: datetime, end: datetime | None = None, scene_id: str | None = None,
                     description: str = "Sentinel-2 scenes") -> PublishedScene:
    """Write the scene's 10 m bands as a COG and publish its STAC item.

    Raises:
        InputDataError: the scene cannot be read, or holds no data.
    """
    scene = read_s2_scene(s2_path, scene_id)
    if not np.any(scene.data != scene.nodata):
        raise InputDataError(s2_path, "the scene holds no data (every pixel is nodata)")
    cog = write_cog(scenes_dir / collection_id / f"{scene.scene_id}.tif", scene.data, scene.crs,
                    scene.transform, nodata=scene.nodata, band_names=S2_10M_BANDS)
    item = stac_items.s2_scene_item(collection_id, scene.scene_id, cog, scene.crs, scene.transform,
                                    scene.shape, start, end)
    coll = stac_items.collection(collection_id, description, item["bbox"], start, end)
    with connect(database_url) as conn, conn.transaction():
        upsert_collection(conn, coll)
        upsert_items(conn, [item])
    return PublishedScene(collection_id, scene.scene_id, cog)
