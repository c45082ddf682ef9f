"""Publishing a Sentinel-2 scene: its COG, its STAC item, its grid patches and their descriptors.

Everything of one scene is written in one transaction, after the COG is in place: a killed
run leaves either nothing of the scene in the catalogue or all of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from catalog import items as stac_items
from catalog.db import connect
from catalog.descriptors import upsert_descriptors
from catalog.load import upsert_collection, upsert_items
from eofusion.features.spectral import SpectralConfig, SpectralDescriptor, s2_dn_to_reflectance
from eofusion.grid import cut_grid, patch_id
from eofusion.io.cog import write_cog
from eofusion.readers.errors import InputDataError
from eofusion.readers.sentinel2 import S2_10M_BANDS, read_s2_scene

DEFAULT_LEVELS: tuple[int, ...] = (480, 240, 120)
#: The spectral descriptor of the four 10 m bands (blue, green, red, NIR) with NDVI/NDWI.
S2_10M_SPECTRAL = SpectralDescriptor(SpectralConfig(n_bands=4, green=1, red=2, nir=3))


@dataclass
class PublishedScene:
    """Where a published scene went."""

    collection: str
    item_id: str
    cog: Path
    patches: int


def publish_s2_scene(database_url: str, s2_path: Path, collection_id: str, scenes_dir: Path,
                     start: datetime, end: datetime | None = None, scene_id: str | None = None,
                     description: str = "Sentinel-2 scenes", levels: Sequence[int] = DEFAULT_LEVELS,
                     radiometric_offset: int = 0) -> PublishedScene:
    """Write the scene's 10 m bands as a COG, and publish the scene item, its patches and descriptors.

    Raises:
        InputDataError: the scene cannot be read, or holds no data.
    """
    scene = read_s2_scene(s2_path, scene_id)
    valid = np.any(scene.data != scene.nodata, axis=0)
    if not valid.any():
        raise InputDataError(s2_path, "the scene holds no data (every pixel is nodata)")
    try:
        cells = cut_grid(valid, levels)
    except ValueError as err:
        raise InputDataError(s2_path, str(err)) from err
    cog = write_cog(scenes_dir / collection_id / f"{scene.scene_id}.tif", scene.data, scene.crs,
                    scene.transform, nodata=scene.nodata, band_names=S2_10M_BANDS)
    scene_item = stac_items.s2_scene_item(collection_id, scene.scene_id, cog, scene.crs, scene.transform,
                                          scene.shape, start, end)
    patch_items, vectors = [], []
    for level in sorted({c.level for c in cells}, reverse=True):
        of_level = [c for c in cells if c.level == level]
        stack = np.stack([scene.data[:, c.row * level:(c.row + 1) * level, c.col * level:(c.col + 1) * level]
                          for c in of_level])
        descriptors = S2_10M_SPECTRAL.batch(s2_dn_to_reflectance(stack, offset=radiometric_offset,
                                                                 nodata=scene.nodata))
        for cell, vec in zip(of_level, descriptors, strict=True):
            pid = patch_id(scene.scene_id, cell.level, cell.row, cell.col)
            parent = patch_id(scene.scene_id, *cell.parent) if cell.parent else None
            wt = window_transform(Window(cell.col * level, cell.row * level, level, level), scene.transform)
            patch_items.append(stac_items.s2_patch_item(collection_id, scene_item, pid, cog, scene.crs, wt, level,
                                                        cell.row, cell.col, parent, cell.valid_fraction))
            vectors.append((pid, vec))
    scene_item["properties"]["eofusion:patches"] = len(patch_items)
    coll = stac_items.collection(collection_id, description, scene_item["bbox"], start, end)
    with connect(database_url) as conn, conn.transaction():
        upsert_collection(conn, coll)
        upsert_items(conn, [scene_item, *patch_items])
        upsert_descriptors(conn, collection_id, [(pid, {"s2": vec}) for pid, vec in vectors])
    return PublishedScene(collection_id, scene.scene_id, cog, len(patch_items))
