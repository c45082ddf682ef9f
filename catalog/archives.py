"""Publishing patch archives (BigEarthNet, EuroSAT): per-patch COGs, items, descriptors, ground truth.

Ground truth is stored as such (``eofusion.ground_truth``, apart from user annotations), mapped
onto the label catalogue, and also written into each item (``eofusion:ground_truth``: the label
paths and their level-1 classes) so STAC clients can filter on it with CQL2.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from catalog import items as stac_items
from catalog.db import connect
from catalog.descriptors import copy_descriptors
from catalog.labels import PATH_SEP, get_label
from catalog.load import upsert_collection, upsert_items
from eofusion.features.fused import fuse_vectors
from eofusion.features.spectral import s2_dn_to_reflectance
from eofusion.io.cog import write_cog
from eofusion.pipeline.scene import S1_DESCRIPTOR, S2_DESCRIPTOR, S2_SPECTRAL
from eofusion.readers.archives import ArchivePatch
from eofusion.readers.errors import InputDataError
from eofusion.readers.sentinel2 import S2_10M_BANDS


@dataclass
class ArchiveReport:
    """What an archive ingest did."""

    collection: str
    patches: int = 0
    with_ground_truth: int = 0
    unmapped_labels: dict[str, int] = field(default_factory=dict)


def label_map(source: str) -> dict[str, str]:
    """Hand-made class → catalogue-path map of an archive ({} for CORINE-named archives)."""
    data: dict[str, Any] = json.loads((resources.files("catalog") / "ground_truth.json").read_text())
    return dict(data.get(source, {}))


def resolve_labels(conn: psycopg.Connection, source: str, names: list[str],
                   cache: dict[str, tuple[int, str] | None]) -> list[tuple[int, str, str]]:
    """(label id, catalogue path, archive name) of the names that map onto the catalogue."""
    mapping = label_map(source)
    out = []
    for name in names:
        if name not in cache:
            target = mapping.get(name)
            label = get_label(conn, target) if target else None
            if label is None:  # CORINE level-3 names are the catalogue's level-2 names
                # Compared on letters only: BigEarthNet writes "Peatbogs" for CORINE's "Peat bogs".
                row = conn.execute("SELECT path FROM eofusion.labels WHERE level = 2 AND NOT user_defined AND "
                                   "regexp_replace(lower(name), '[^a-z]', '', 'g') = "
                                   "regexp_replace(lower(%s), '[^a-z]', '', 'g')", (name,)).fetchone()
                label = get_label(conn, row[0]) if row else None
            cache[name] = (label.id, label.path) if label else None
        hit = cache[name]
        if hit:
            out.append((hit[0], hit[1], name))
    return out


def _batches(patches: Iterable[ArchivePatch], size: int) -> Iterator[list[ArchivePatch]]:
    it = iter(patches)
    while batch := list(islice(it, size)):
        yield batch


def publish_archive(database_url: str, collection_id: str, scenes_dir: Path, patches: Iterable[ArchivePatch],
                    description: str, start: datetime | None = None, end: datetime | None = None,
                    batch_size: int = 500, progress: Callable[[int], None] | None = None) -> ArchiveReport:
    """Publish patches batch by batch, one transaction per batch (reruns upsert the same ids).

    Args:
        start, end: Acquisition time (or interval) for patches whose archive gives none.

    Raises:
        InputDataError: a patch without acquisition time and no ``start`` given, or a bad file.
    """
    report = ArchiveReport(collection_id)
    cache: dict[str, tuple[int, str] | None] = {}
    folder = scenes_dir / collection_id
    first = True
    for batch in _batches(patches, batch_size):
        items, ids, gt_rows = [], [], []
        with connect(database_url) as conn:
            for p in batch:
                when = p.acquired or start
                if when is None:
                    raise InputDataError(p.source + ":" + p.id, "no acquisition time in the archive: give --datetime")
                s2_cog = write_cog(folder / f"{p.id}_s2.tif", p.s2, p.crs, p.transform, 0, S2_10M_BANDS) \
                    if p.s2 is not None else None
                s1_cog = write_cog(folder / f"{p.id}_s1.tif", p.s1, p.crs, p.transform, float("nan"),
                                   p.s1_polarisations) if p.s1 is not None else None
                labels = resolve_labels(conn, p.source, p.labels, cache)
                for name in p.labels:
                    if name not in {n for _, _, n in labels}:
                        report.unmapped_labels[name] = report.unmapped_labels.get(name, 0) + 1
                paths = sorted({path for _, path, _ in labels} | {path.split(PATH_SEP)[0] for _, path, _ in labels})
                assets = stac_items.SceneAssets(s2_cog, s1_cog, p.s1_polarisations, p.s1_acquired)
                item = stac_items.scene_item(collection_id, p.id, p.crs, p.transform, p.shape, when,
                                             None if p.acquired else end, assets)
                item["properties"].update({stac_items.KIND: "patch", stac_items.ANNOTATIONS: [],
                                           "eofusion:grid_level": p.shape[0],
                                           "eofusion:archive": p.source, "eofusion:ground_truth": paths,
                                           "eofusion:source_labels": p.labels})
                items.append(item)
                ids.append(p.id)
                gt_rows += [(collection_id, p.id, lid, name) for lid, _, name in labels]
                report.with_ground_truth += bool(labels)
        kinds = _describe(batch)
        with connect(database_url) as conn, conn.transaction():
            if first:
                first_time = start or min((p.acquired for p in batch if p.acquired), default=None)
                upsert_collection(conn, stac_items.collection(collection_id, description, [-180, -90, 180, 90],
                                                              first_time, end))
                first = False
            upsert_items(conn, items)
            for kind, (rows, vecs) in kinds.items():
                copy_descriptors(conn, collection_id, [ids[i] for i in rows], {kind: vecs})
            conn.execute("DELETE FROM eofusion.ground_truth WHERE collection = %s AND item_id = ANY(%s)",
                         (collection_id, ids))
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO eofusion.ground_truth (collection, item_id, label_id, source_label) "
                                "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING", gt_rows)
        report.patches += len(batch)
        if progress:
            progress(report.patches)
    return report


def _s2(p: ArchivePatch) -> np.ndarray:
    assert p.s2 is not None
    return p.s2


def _s1(p: ArchivePatch) -> np.ndarray:
    assert p.s1 is not None
    return p.s1


def _describe(batch: list[ArchivePatch]) -> dict[str, tuple[list[int], np.ndarray]]:
    """Descriptors of a batch, per kind: (row indices in the batch, vectors). Same-shape patches are stacked."""
    out: dict[str, tuple[list[int], list[np.ndarray]]] = {}
    shapes = sorted({p.shape for p in batch})
    for shape in shapes:
        rows2 = [i for i, p in enumerate(batch) if p.shape == shape and p.s2 is not None]
        rows1 = [i for i, p in enumerate(batch) if p.shape == shape and p.s1 is not None]
        refl = s2_dn_to_reflectance(np.stack([_s2(batch[i]) for i in rows2]), nodata=0) if rows2 else None
        s2v = S2_DESCRIPTOR.batch(refl) if refl is not None else None
        spectral = S2_SPECTRAL.batch(refl) if refl is not None else None
        s1v = S1_DESCRIPTOR.batch(np.stack([_s1(batch[i])[:1] for i in rows1])) if rows1 else None
        if s2v is not None:
            out.setdefault("s2", ([], []))[0].extend(rows2)
            out["s2"][1].append(s2v)
        if s1v is not None:
            out.setdefault("s1", ([], []))[0].extend(rows1)
            out["s1"][1].append(s1v)
        both = sorted(set(rows1) & set(rows2))
        if both and s1v is not None and spectral is not None:
            f = fuse_vectors(s1v[[rows1.index(i) for i in both]], spectral[[rows2.index(i) for i in both]])
            out.setdefault("fused", ([], []))[0].extend(both)
            out["fused"][1].append(f)
    return {k: (rows, np.concatenate(v)) for k, (rows, v) in out.items()}
