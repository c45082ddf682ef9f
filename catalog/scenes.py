"""Publishing a scene: COGs, the scene item, its grid patches and their descriptors.

The pixels are processed strip by strip by :mod:`eofusion.pipeline.scene` (on dask when a client
is given). Everything of one scene reaches the catalogue in one transaction: it is opened before
the strips run, receives each strip's patch items and descriptors as the strip arrives, and commits
after the COGs are in place. A run killed at any point leaves either nothing of the scene or all of
it, and a rerun upserts the same ids.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from catalog import hrefs
from catalog import items as stac_items
from catalog.db import connect
from catalog.descriptors import copy_descriptors
from catalog.load import upsert_collection, upsert_items
from eofusion.grid import patch_id
from eofusion.pipeline.scene import (
    CogAssembler,
    SceneInputs,
    StripResult,
    default_work_dir,
    prepare,
    run_scene,
)
from eofusion.readers.errors import InputDataError
from eofusion.readers.naming import acquisition_time
from eofusion.readers.sentinel2 import S2_10M_BANDS

DEFAULT_LEVELS: tuple[int, ...] = (480, 240, 120)


@dataclass
class PublishedScene:
    """Where a published scene went."""

    collection: str
    item_id: str
    cog: Path  # the S2 COG, or the S1 COG of an S1-only scene
    patches: int
    s1_cog: Path | None = None


def _times(s2: Path | None, s1: Path | None, start: datetime | None, end: datetime | None,
           ) -> tuple[datetime, datetime | None, datetime | None]:
    s1_time = acquisition_time(Path(s1).name) if s1 else None
    if start is None:
        named = acquisition_time(Path(s2).name) if s2 else s1_time
        if named is None:
            raise InputDataError(s2 or s1 or "-", "no acquisition time in the product name: give --datetime")
        start = named
    return start, end, s1_time


def publish_scene(database_url: str, collection_id: str, scenes_dir: Path, *, s2: Path | None = None,
                  s1: Path | None = None, start: datetime | None = None, end: datetime | None = None,
                  scene_id: str | None = None, levels: Sequence[int] = DEFAULT_LEVELS, s1_scale: str = "auto",
                  s2_offset: int = 0, description: str = "Sentinel-1/2 scenes cut into patches",
                  client: Any = None, progress: Callable[[int, int], None] | None = None,
                  work_dir: Path | None = None) -> PublishedScene:
    """Process and publish one scene (S2, S1 or both co-registered on the S2 grid).

    Raises:
        InputDataError: bad input, named with its file and problem; nothing in the catalogue changes.
    """
    start, end, s1_time = _times(s2, s1, start, end)
    inputs = prepare(s2, s1, levels, scene_id=scene_id, s1_scale=s1_scale, s2_offset=s2_offset)
    work = work_dir or default_work_dir(scenes_dir.parent if scenes_dir.parent.exists() else None)
    target = scenes_dir / collection_id
    s2_cog = target / f"{inputs.scene_id}_s2.tif" if inputs.s2_files else None
    s1_cog = target / f"{inputs.scene_id}_s1.tif" if inputs.s1_files else None
    assets = stac_items.SceneAssets(s2_cog, s1_cog, tuple(inputs.s1_files or ()), s1_time,
                                    inputs.s1_scale if inputs.s1_files else None)
    # What patch items inherit from the scene item does not depend on the number of patches.
    scene = _scene_item(collection_id, inputs, 0, start, end, assets)
    coll = stac_items.collection(collection_id, description, scene["bbox"], start, end)
    s2_asm = CogAssembler(inputs.grid, s2_cog, S2_10M_BANDS) if s2_cog else None
    s1_asm = CogAssembler(inputs.grid, s1_cog, tuple(inputs.s1_files or ())) if s1_cog else None
    assemblers = [a for a in (s2_asm, s1_asm) if a is not None]
    try:
        # One transaction for the whole scene, open while the strips are computed: each strip's
        # items and descriptors are written as it arrives (PostgreSQL works while the workers
        # compute), the COGs are assembled while the scene item is written, and the commit comes
        # only after the COGs are in place. Any failure (or a killed run) rolls everything back.
        with connect(database_url) as conn, conn.transaction():
            upsert_collection(conn, coll)

            def write_strip(strip: StripResult) -> None:
                # The strip's pixels go into the COG mosaics on their own threads meanwhile.
                if s2_asm is not None and strip.s2_strip:
                    s2_asm.add(strip.s2_strip)
                if s1_asm is not None and strip.s1_strip:
                    s1_asm.add(strip.s1_strip)
                if strip.cells:
                    items, ids = _patch_items(collection_id, inputs, scene, strip.cells)
                    upsert_items(conn, items)
                    copy_descriptors(conn, collection_id, ids, strip.vectors)

            result = run_scene(inputs, work, client=client, progress=progress, on_strip=write_strip)
            # Both COGs are finished at once (overviews, compression), while the scene item is written.
            with ThreadPoolExecutor(max_workers=2, thread_name_prefix="finish-cog") as pool:
                cogs = [pool.submit(a.finish) for a in assemblers]
                upsert_items(conn, [_scene_item(collection_id, inputs, len(result.cells), start, end, assets)])
                for fut in cogs:
                    fut.result()
    finally:
        for a in assemblers:
            a.abort()
        shutil.rmtree(work, ignore_errors=True)
    main = s2_cog or s1_cog
    assert main is not None
    return PublishedScene(collection_id, inputs.scene_id, main, len(result.cells), s1_cog)


def _scene_item(collection_id: str, inputs: SceneInputs, n_patches: int, start: datetime, end: datetime | None,
                assets: stac_items.SceneAssets) -> dict[str, Any]:
    g = inputs.grid
    scene = stac_items.scene_item(collection_id, inputs.scene_id, g.crs, g.transform, (g.height, g.width),
                                  start, end, assets, {"eofusion:patches": n_patches,
                                                       "eofusion:grid_levels": list(inputs.levels)})
    # The scene links to a search for its patches (thousands: a link each would bloat the item).
    query = urlencode({"filter-lang": "cql2-text", "filter": f"\"eofusion:scene\" = '{inputs.scene_id}'"})
    scene["links"].append({"rel": "related", "type": "application/geo+json", "title": "Patches of this scene",
                           "href": hrefs.stac_link(f"collections/{collection_id}/items?{query}")})
    return scene


def _patch_items(collection_id: str, inputs: SceneInputs, scene: dict[str, Any],
                 cells: Sequence[tuple[int, int, int, float]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Items of the given cells. A cell's parent is in the same strip (strips are one coarsest cell high)."""
    g = inputs.grid
    present = {(lv, r, c) for lv, r, c, _ in cells}
    patches, ids = [], []
    transforms = [window_transform(Window(col * level, row * level, level, level), g.transform)
                  for level, row, col, _ in cells]
    # All footprints in one reprojection call (the same numbers as one call per patch).
    where = stac_items.footprints(g.crs, transforms, [(lv, lv) for lv, _, _, _ in cells])
    for (level, row, col, frac), wt, fp in zip(cells, transforms, where, strict=True):
        pid = patch_id(inputs.scene_id, level, row, col)
        parent = None
        coarser = [lv for lv in inputs.levels if lv > level]
        if coarser:
            up = min(coarser)
            key = (up, row * level // up, col * level // up)
            parent = patch_id(inputs.scene_id, *key) if key in present else None
        patches.append(stac_items.patch_item(collection_id, scene, pid, g.crs, wt, level, row, col, parent, frac,
                                             where=fp))
        ids.append(pid)
    return patches, ids
