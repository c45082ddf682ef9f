"""Sentinel-1 GRD backscatter (VV, optionally VH), and its co-registration onto a Sentinel-2 grid.

GRD products come as one GeoTIFF per polarisation (a SAFE folder's ``measurement/`` or a plain
folder), in linear intensity/amplitude or in dB. Everything is brought to linear intensity so
the SAR descriptors see the physical quantity whatever the input scale.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.transform import Affine, array_bounds
from rasterio.warp import Resampling, reproject, transform_bounds

from eofusion.readers.errors import InputDataError

Scale = Literal["auto", "linear", "amplitude", "db"]
POLARISATIONS = ("VV", "VH")
_SUFFIXES = (".tif", ".tiff")


@dataclass
class S1Scene:
    """Sentinel-1 backscatter as linear intensity, NaN where there is no data.

    Attributes:
        scene_id: Identifier derived from the input's name.
        data: float32 (n_pol, height, width), polarisations in :attr:`polarisations` order.
        polarisations: e.g. ("VV", "VH") or ("VV",).
        crs, transform: The grid.
        source_scale: The scale the input was in (``linear``, ``amplitude`` or ``db``).
        sources: The file each polarisation came from.
    """

    scene_id: str
    data: NDArray[np.float32]
    polarisations: tuple[str, ...]
    crs: CRS
    transform: Affine
    source_scale: str
    sources: dict[str, Path]

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return int(self.data.shape[1]), int(self.data.shape[2])


def _pol_of(name: str) -> str | None:
    m = re.search(r"(?:^|[_\-.])(vv|vh)(?:[_\-.]|$)", name, re.IGNORECASE)
    return m.group(1).upper() if m else None


def find_polarisation_files(path: Path) -> dict[str, Path]:
    """VV (required) and VH (optional) GeoTIFFs below ``path``.

    Raises:
        InputDataError: no VV band, or a polarisation found twice.
    """
    path = Path(path)
    if not path.exists():
        raise InputDataError(path, "no such file or folder")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix.lower() in _SUFFIXES)
    found: dict[str, Path] = {}
    for f in files:
        pol = _pol_of(f.stem)
        if pol is None:
            continue
        if pol in found:
            raise InputDataError(path, f"polarisation {pol} found twice: {found[pol].name} and {f.name}")
        found[pol] = f
    if "VV" not in found:
        raise InputDataError(path, "missing Sentinel-1 VV band (a GeoTIFF whose name contains 'vv')")
    return found


def to_linear_intensity(values: NDArray[np.floating], scale: str) -> NDArray[np.float32]:
    """Convert backscatter to linear intensity (dB: 10^(x/10); amplitude: x^2)."""
    v = values.astype(np.float32)
    if scale == "db":
        return np.power(np.float32(10.0), v / np.float32(10.0))
    if scale == "amplitude":
        return v * v
    return v


def guess_scale(values: NDArray[np.floating]) -> str:
    """Tell dB from linear data: dB backscatter is mostly negative, linear never is."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return "linear"
    return "db" if np.median(finite) < 0 else "linear"


def read_s1_scene(path: Path, scale: Scale = "auto", scene_id: str | None = None) -> S1Scene:
    """Read a Sentinel-1 GRD scene (VV, and VH when present) as linear intensity.

    Args:
        path: A SAFE folder, a folder of per-polarisation GeoTIFFs, or one VV GeoTIFF.
        scale: The input's scale; ``auto`` tells dB from linear by the sign of the median.
        scene_id: Identifier; defaults to the folder or file name.

    Raises:
        InputDataError: missing VV, unreadable file, polarisations on different grids, no CRS.
    """
    path = Path(path)
    files = find_polarisation_files(path)
    sid = scene_id or re.sub(r"[^A-Za-z0-9_\-]", "_", path.stem if path.is_file() else path.name)
    arrays: list[NDArray[np.float32]] = []
    grid: tuple[CRS, Affine, tuple[int, int]] | None = None
    detected: set[str] = set()
    pols = tuple(p for p in POLARISATIONS if p in files)
    for pol in pols:
        f = files[pol]
        try:
            with rasterio.open(f) as src:
                if src.crs is None:
                    raise InputDataError(f, "no coordinate reference system")
                this = (src.crs, src.transform, (src.height, src.width))
                if grid is not None and this != grid:
                    raise InputDataError(f, f"polarisation {pol} is not on the grid of VV")
                grid = this
                band = src.read(1, masked=True).astype(np.float32).filled(np.nan)
        except RasterioIOError as err:
            raise InputDataError(f, f"cannot read raster: {err}") from err
        s = guess_scale(band) if scale == "auto" else scale
        detected.add(s)
        lin = to_linear_intensity(band, s)
        lin[~np.isfinite(lin) | (lin <= 0)] = np.nan  # zero backscatter is GRD border fill
        arrays.append(lin)
    assert grid is not None
    return S1Scene(sid, np.stack(arrays), pols, grid[0], grid[1], "/".join(sorted(detected)), files)


def coregister(s1: S1Scene, crs: CRS, transform: Affine, shape: tuple[int, int]) -> NDArray[np.float32]:
    """Resample S1 onto a Sentinel-2 grid (average over the S2 pixel; NaN outside the S1 footprint).

    Raises:
        InputDataError: the two scenes do not overlap.
    """
    h, w = shape
    s2_bounds = array_bounds(h, w, transform)
    s1_bounds = transform_bounds(s1.crs, crs, *array_bounds(*s1.shape, s1.transform), densify_pts=21)
    overlap = (min(s2_bounds[2], s1_bounds[2]) - max(s2_bounds[0], s1_bounds[0]),
               min(s2_bounds[3], s1_bounds[3]) - max(s2_bounds[1], s1_bounds[1]))
    if overlap[0] <= 0 or overlap[1] <= 0:
        raise InputDataError(next(iter(s1.sources.values())), "Sentinel-1 and Sentinel-2 scenes do not overlap")
    out = np.full((s1.data.shape[0], h, w), np.nan, dtype=np.float32)
    for i in range(s1.data.shape[0]):
        reproject(s1.data[i], out[i], src_transform=s1.transform, src_crs=s1.crs, src_nodata=np.nan,
                  dst_transform=transform, dst_crs=crs, dst_nodata=np.nan, resampling=Resampling.average)
    return out
