"""Already-cut patch archives with ground truth: BigEarthNet (S1 + S2) and EuroSAT-MS.

Each patch comes out on one grid: the four Sentinel-2 10 m bands (B02, B03, B04, B08, digital
numbers) and/or Sentinel-1 VV/VH as linear intensity, with the archive's own class names. Mapping
those names onto EOFusion's label catalogue is the catalogue's job, not the reader's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.transform import Affine

from eofusion.readers.errors import InputDataError
from eofusion.readers.naming import acquisition_time
from eofusion.readers.sentinel1 import guess_scale, to_linear_intensity
from eofusion.readers.sentinel2 import S2_10M_BANDS

#: EuroSAT-MS band order in its 13-band GeoTIFFs.
EUROSAT_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A")


@dataclass
class ArchivePatch:
    """One patch of an archive, on one grid."""

    id: str
    crs: CRS
    transform: Affine
    shape: tuple[int, int]
    labels: list[str]
    source: str
    s2: NDArray[np.uint16] | None = None  # (4, h, w) digital numbers, S2_10M_BANDS order
    s1: NDArray[np.float32] | None = None  # (n_pol, h, w) linear intensity
    s1_polarisations: tuple[str, ...] = ()
    acquired: datetime | None = None
    s1_acquired: datetime | None = None
    extra: dict[str, object] = field(default_factory=dict)


def _read_band(path: Path) -> tuple[NDArray[np.generic], CRS, Affine]:
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise InputDataError(path, "no coordinate reference system")
            return src.read(1), src.crs, src.transform
    except RasterioIOError as err:
        raise InputDataError(path, f"cannot read raster: {err}") from err


def _labels_json(folder: Path) -> dict[str, object]:
    files = list(folder.glob("*_labels_metadata.json"))
    if not files:
        raise InputDataError(folder, "no *_labels_metadata.json")
    try:
        data: dict[str, object] = json.loads(files[0].read_text())
        return data
    except json.JSONDecodeError as err:
        raise InputDataError(files[0], f"malformed JSON: {err}") from err


def _meta_time(meta: dict[str, object], name: str) -> datetime | None:
    # BigEarthNet metadata carries the time ("acquisition_date" for S2, "acquisition_time" for S1);
    # some patch names do not (S2B_MSIL2A_20170924T93020_...).
    for key in ("acquisition_date", "acquisition_time"):
        value = meta.get(key)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace(" ", "T")).replace(tzinfo=UTC)
            except ValueError:
                continue
    return acquisition_time(name)


def _label_list(meta: dict[str, object]) -> list[str]:
    labels = meta.get("labels", [])
    return [str(x) for x in labels] if isinstance(labels, list) else []


def _band_file(folder: Path, suffix: str) -> Path:
    found = [p for p in folder.glob(f"*_{suffix}.tif")]
    if not found:
        raise InputDataError(folder, f"missing band file *_{suffix}.tif")
    return found[0]


def read_bigearthnet(s2_root: Path | None, s1_root: Path | None = None) -> Iterator[ArchivePatch]:
    """Patches of a BigEarthNet(-MM) archive: S2 folders, S1 folders, or both (paired through
    ``corresponding_s2_patch`` of the S1 metadata).

    Raises:
        InputDataError: a missing band, unreadable file or metadata, naming the file.
    """
    if s2_root is None and s1_root is None:
        raise InputDataError("-", "give the S2 folder, the S1 folder or both")
    s1_by_s2: dict[str, Path] = {}
    s1_only: list[Path] = []
    if s1_root is not None:
        if not Path(s1_root).is_dir():
            raise InputDataError(s1_root, "no such folder")
        for folder in sorted(p for p in Path(s1_root).iterdir() if p.is_dir()):
            meta = _labels_json(folder)
            partner = str(meta.get("corresponding_s2_patch") or "")
            if s2_root is not None and partner:
                s1_by_s2[partner] = folder
            else:
                s1_only.append(folder)
    if s2_root is not None:
        if not Path(s2_root).is_dir():
            raise InputDataError(s2_root, "no such folder")
        for folder in sorted(p for p in Path(s2_root).iterdir() if p.is_dir()):
            meta = _labels_json(folder)
            bands = [_read_band(_band_file(folder, b)) for b in S2_10M_BANDS]
            crs, transform = bands[0][1], bands[0][2]
            s2 = np.stack([b[0] for b in bands]).astype(np.uint16)
            patch = ArchivePatch(folder.name, crs, transform, (s2.shape[1], s2.shape[2]), _label_list(meta),
                                 "BigEarthNet", s2=s2, acquired=_meta_time(meta, folder.name))
            if folder.name in s1_by_s2:
                _attach_s1(patch, s1_by_s2[folder.name])
            yield patch
    for folder in s1_only:
        meta = _labels_json(folder)
        vv, crs, transform = _read_band(_band_file(folder, "VV"))
        patch = ArchivePatch(folder.name, crs, transform, (vv.shape[0], vv.shape[1]), _label_list(meta),
                             "BigEarthNet", acquired=_meta_time(meta, folder.name))
        _attach_s1(patch, folder)
        yield patch


def _attach_s1(patch: ArchivePatch, folder: Path) -> None:
    pols, arrays = [], []
    for pol in ("VV", "VH"):
        try:
            f = _band_file(folder, pol)
        except InputDataError:
            if pol == "VV":
                raise
            continue
        band, crs, transform = _read_band(f)
        if band.shape != patch.shape or crs != patch.crs or not transform.almost_equals(patch.transform):
            raise InputDataError(f, "the S1 patch is not on the grid of its S2 patch")
        values = band.astype(np.float32)
        lin = to_linear_intensity(values, guess_scale(values))
        lin[~np.isfinite(lin) | (lin <= 0)] = np.nan
        arrays.append(lin)
        pols.append(pol)
    patch.s1 = np.stack(arrays)
    patch.s1_polarisations = tuple(pols)
    patch.s1_acquired = _meta_time(_labels_json(folder), folder.name)


def read_eurosat(root: Path) -> Iterator[ArchivePatch]:
    """Patches of EuroSAT-MS: ``root/<Class>/<Class>_<n>.tif``, 13 bands, class = folder name.

    Raises:
        InputDataError: a file that is not a 13-band raster, or an empty archive.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputDataError(root, "no such folder")
    files = sorted(root.glob("*/*.tif"))
    if not files:
        raise InputDataError(root, "no <Class>/*.tif patches (EuroSAT layout)")
    idx = [EUROSAT_BANDS.index(b) + 1 for b in S2_10M_BANDS]
    for f in files:
        try:
            with rasterio.open(f) as src:
                if src.count != len(EUROSAT_BANDS):
                    raise InputDataError(f, f"expected {len(EUROSAT_BANDS)} bands, found {src.count}")
                if src.crs is None:
                    raise InputDataError(f, "no coordinate reference system")
                s2 = src.read(idx).astype(np.uint16)
                crs, transform = src.crs, src.transform
        except RasterioIOError as err:
            raise InputDataError(f, f"cannot read raster: {err}") from err
        pid = re.sub(r"[^A-Za-z0-9_\-]", "_", f.stem)
        yield ArchivePatch(pid, crs, transform, (s2.shape[1], s2.shape[2]), [f.parent.name], "EuroSAT", s2=s2)
