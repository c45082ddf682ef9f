"""Sentinel-2 scenes: the 10 m bands from a SAFE folder, a folder of JP2/GeoTIFF band files, or one file."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.transform import Affine

from eofusion.readers.errors import InputDataError

#: The 10 m bands, in the order EOFusion stores them (blue, green, red, near infrared).
S2_10M_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B08")
#: Centre wavelengths (micrometres) and common names, for eo:bands.
S2_BAND_INFO: dict[str, tuple[str, float, float]] = {
    "B02": ("blue", 0.49, 0.098), "B03": ("green", 0.56, 0.045),
    "B04": ("red", 0.665, 0.038), "B08": ("nir", 0.842, 0.145),
}
_RASTER_SUFFIXES = (".jp2", ".tif", ".tiff")


@dataclass
class S2Scene:
    """A Sentinel-2 scene on its native 10 m grid.

    Attributes:
        scene_id: A stable identifier derived from the input's name.
        data: Digital numbers, shape (4, height, width), band order :data:`S2_10M_BANDS`.
        crs: Coordinate reference system of the grid.
        transform: Affine transform of the grid.
        nodata: Value marking no data in ``data`` (0 for Level-1C/2A products).
        sources: The file each band came from.
    """

    scene_id: str
    data: NDArray[np.uint16]
    crs: CRS
    transform: Affine
    nodata: int
    sources: dict[str, Path]

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return int(self.data.shape[1]), int(self.data.shape[2])


def _band_of(name: str) -> str | None:
    m = re.search(r"(?:^|[_\-.])(B0?[2348]|B8A?)(?:[_\-.]|$)", name, re.IGNORECASE)
    if not m:
        return None
    band = m.group(1).upper()
    band = "B0" + band[1:] if len(band) == 2 else band
    return band if band in S2_10M_BANDS else None


def find_band_files(path: Path) -> dict[str, Path]:
    """Find the 10 m band files below ``path`` (a SAFE folder or a folder of band files).

    Raises:
        InputDataError: when a band is missing or found twice.
    """
    path = Path(path)
    if not path.exists():
        raise InputDataError(path, "no such file or folder")
    files = [p for p in sorted(path.rglob("*")) if p.suffix.lower() in _RASTER_SUFFIXES and p.is_file()]
    # In a SAFE L2A product the 10 m bands sit in R10m; prefer those over resampled copies.
    found: dict[str, Path] = {}
    for f in files:
        band = _band_of(f.stem)
        if band is None or ("R20m" in f.parts or "R60m" in f.parts):
            continue
        if band in found:
            raise InputDataError(path, f"band {band} found twice: {found[band].name} and {f.name}")
        found[band] = f
    missing = [b for b in S2_10M_BANDS if b not in found]
    if missing:
        raise InputDataError(path, f"missing Sentinel-2 band(s) {', '.join(missing)} (need {', '.join(S2_10M_BANDS)})")
    return found


def read_s2_scene(path: Path, scene_id: str | None = None) -> S2Scene:
    """Read the four 10 m bands of a Sentinel-2 scene into one array.

    Args:
        path: A SAFE folder, a folder of band files, or a 4-band GeoTIFF (B02, B03, B04, B08).
        scene_id: Identifier; defaults to the folder or file name.

    Raises:
        InputDataError: missing band, unreadable file, bands on different grids, unknown CRS.
    """
    path = Path(path)
    sid = scene_id or re.sub(r"[^A-Za-z0-9_\-]", "_", path.stem if path.is_file() else path.name)
    if path.is_file():
        try:
            with rasterio.open(path) as src:
                if src.count != 4:
                    raise InputDataError(path, f"expected 4 bands (B02, B03, B04, B08), found {src.count}")
                if src.crs is None:
                    raise InputDataError(path, "no coordinate reference system")
                data = src.read().astype(np.uint16)
                return S2Scene(sid, data, src.crs, src.transform, int(src.nodata or 0),
                               {b: path for b in S2_10M_BANDS})
        except RasterioIOError as err:
            raise InputDataError(path, f"cannot read raster: {err}") from err
    sources = find_band_files(path)
    arrays: list[NDArray[np.uint16]] = []
    grid: tuple[CRS, Affine, tuple[int, int]] | None = None
    for band in S2_10M_BANDS:
        f = sources[band]
        try:
            with rasterio.open(f) as src:
                if src.crs is None:
                    raise InputDataError(f, "no coordinate reference system")
                this = (src.crs, src.transform, (src.height, src.width))
                if grid is not None and this != grid:
                    raise InputDataError(f, f"band {band} is not on the grid of band {S2_10M_BANDS[0]}")
                grid = this
                arrays.append(src.read(1).astype(np.uint16))
        except RasterioIOError as err:
            raise InputDataError(f, f"cannot read raster: {err}") from err
    assert grid is not None
    return S2Scene(sid, np.stack(arrays), grid[0], grid[1], 0, sources)
