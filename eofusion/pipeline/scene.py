"""One scene, strip by strip: read S2 (and S1 warped onto the S2 grid), cut the grids, describe patches.

The scene is split into horizontal strips one coarsest cell high. A strip is an independent task:
it reads only its window from the input files (S1 through a ``WarpedVRT`` onto the S2 grid), writes
its aligned pixels to a strip GeoTIFF and returns the cells and descriptors of every level inside
it. Strips run on dask.distributed (a LocalCluster sized to the machine, or an existing scheduler),
so memory stays bounded by a few strips per worker whatever the scene size; the strip files are
then assembled into the scene COGs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from numpy.typing import NDArray
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import Affine
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from eofusion.features.fused import fuse_vectors
from eofusion.features.s2texture import S2TextureDescriptor
from eofusion.features.spectral import SpectralConfig, SpectralDescriptor, s2_dn_to_reflectance
from eofusion.features.wld import WLDConfig, WLDDescriptor
from eofusion.grid import valid_fractions
from eofusion.readers.errors import InputDataError
from eofusion.readers.sentinel1 import POLARISATIONS, find_polarisation_files, guess_scale, to_linear_intensity
from eofusion.readers.sentinel2 import S2_10M_BANDS, find_band_files

#: The multispectral histogram of the four 10 m bands (blue, green, red, NIR) with NDVI/NDWI (96-d):
#: the S2 part of the fused descriptor.
S2_SPECTRAL = SpectralDescriptor(SpectralConfig(n_bands=4, green=1, red=2, nir=3))
#: The stored S2 descriptor: that histogram plus the WLD texture of NIR (160-d).
S2_DESCRIPTOR = S2TextureDescriptor()
#: S1 part: WLD of VV in linear intensity (64-d).
S1_DESCRIPTOR = WLDDescriptor(WLDConfig(scale="intensity", band=0))
DESCRIPTOR_DIMS = {"s2": S2_DESCRIPTOR.dim, "s1": S1_DESCRIPTOR.dim, "fused": S1_DESCRIPTOR.dim + S2_SPECTRAL.dim}


@dataclass(frozen=True)
class Grid:
    """The reference grid of a scene (Sentinel-2's when present)."""

    crs: CRS
    transform: Affine
    height: int
    width: int


@dataclass(frozen=True)
class SceneInputs:
    """What a scene is made of. Paths must be readable by every dask worker."""

    scene_id: str
    grid: Grid
    s2_files: dict[str, str] | None = None  # band -> file
    s1_files: dict[str, str] | None = None  # polarisation -> file
    s1_scale: str = "linear"
    s2_offset: int = 0  # radiometric offset of processing baseline >= 04.00 (-1000)
    levels: tuple[int, ...] = (480, 240, 120)
    min_valid: float = 0.5

    @property
    def sensors(self) -> tuple[str, ...]:
        """Sensors present, among ("s1", "s2")."""
        return tuple(s for s, f in (("s1", self.s1_files), ("s2", self.s2_files)) if f)


@dataclass
class StripResult:
    """Cells and descriptors of one strip."""

    row0: int
    cells: list[tuple[int, int, int, float]] = field(default_factory=list)  # (level, row, col, valid fraction)
    vectors: dict[str, NDArray[np.float32]] = field(default_factory=dict)  # kind -> (n_cells, dim)
    s2_strip: str | None = None
    s1_strip: str | None = None


def _grid_of(path: Path) -> Grid:
    try:
        with rasterio.open(path) as src:
            if src.crs is None:
                raise InputDataError(path, "no coordinate reference system")
            return Grid(src.crs, src.transform, src.height, src.width)
    except rasterio.errors.RasterioIOError as err:
        raise InputDataError(path, f"cannot read raster: {err}") from err


def prepare(s2: Path | None, s1: Path | None, levels: Sequence[int], scene_id: str | None = None,
            s1_scale: str = "auto", s2_offset: int = 0, min_valid: float = 0.5) -> SceneInputs:
    """Check the inputs and fix the reference grid (cheap: reads metadata and one S1 sample).

    Raises:
        InputDataError: missing band, unreadable file, bands on different grids, no CRS, no overlap.
    """
    if s2 is None and s1 is None:
        raise InputDataError("-", "give a Sentinel-2 scene, a Sentinel-1 scene, or both")
    lv = tuple(sorted({int(v) for v in levels}, reverse=True))
    if not lv or lv[-1] <= 0 or any(lv[0] % v for v in lv):
        raise InputDataError(s2 or s1 or "-", f"grid levels must be positive and divide the coarsest: {list(levels)}")
    s2_files = s1_files = None
    grid = None
    if s2 is not None:
        found = find_band_files(Path(s2))
        s2_files = {b: str(found[b]) for b in S2_10M_BANDS}
        grids = {b: _grid_of(Path(f)) for b, f in s2_files.items()}
        grid = grids[S2_10M_BANDS[0]]
        for b, g in grids.items():
            if g != grid:
                raise InputDataError(s2_files[b], f"band {b} is not on the grid of band {S2_10M_BANDS[0]}")
    scale = "linear"
    if s1 is not None:
        pols = find_polarisation_files(Path(s1))
        s1_files = {p: str(pols[p]) for p in POLARISATIONS if p in pols}
        vv = _grid_of(Path(s1_files["VV"]))
        for p, f in s1_files.items():
            if _grid_of(Path(f)) != vv:
                raise InputDataError(f, f"polarisation {p} is not on the grid of VV")
        scale = s1_scale if s1_scale != "auto" else _sample_scale(Path(s1_files["VV"]))
        if grid is None:
            grid = vv
        else:
            _check_overlap(grid, vv, Path(s1_files["VV"]))
    assert grid is not None
    if lv[-1] > min(grid.height, grid.width):
        raise InputDataError(s2 or s1 or "-", f"the finest level ({lv[-1]} px) is larger than the scene "
                             f"({grid.height}x{grid.width} px)")
    base = Path(s2 if s2 is not None else s1)  # type: ignore[arg-type]
    name = base.stem if base.is_file() else base.name
    sid = scene_id or "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    return SceneInputs(sid, grid, s2_files, s1_files, scale, s2_offset, lv, min_valid)


def _sample_scale(path: Path) -> str:
    with rasterio.open(path) as src:
        # An overview-sized read is enough to tell dB (mostly negative) from linear.
        sample = src.read(1, out_shape=(min(src.height, 512), min(src.width, 512)), masked=True)
    return guess_scale(sample.astype(np.float32).filled(np.nan))


def _check_overlap(grid: Grid, s1: Grid, path: Path) -> None:
    from rasterio.transform import array_bounds
    from rasterio.warp import transform_bounds

    a = array_bounds(grid.height, grid.width, grid.transform)
    b = transform_bounds(s1.crs, grid.crs, *array_bounds(s1.height, s1.width, s1.transform), densify_pts=21)
    if min(a[2], b[2]) <= max(a[0], b[0]) or min(a[3], b[3]) <= max(a[1], b[1]):
        raise InputDataError(path, "Sentinel-1 and Sentinel-2 scenes do not overlap")


def strips(inputs: SceneInputs) -> list[int]:
    """Top rows of the strips (one coarsest cell high; the partial bottom strip is left out)."""
    step = inputs.levels[0]
    return list(range(0, (inputs.grid.height // step) * step, step))


def process_strip(inputs: SceneInputs, row0: int, work_dir: str) -> StripResult:
    """Read, co-register and describe one strip; write its aligned pixels to strip GeoTIFFs."""
    g, step = inputs.grid, inputs.levels[0]
    width = (g.width // inputs.levels[-1]) * inputs.levels[-1]
    win = Window(0, row0, width, step)
    wt = window_transform(win, g.transform)
    result = StripResult(row0)
    valid = np.ones((step, width), dtype=bool)
    s2 = s1 = None
    if inputs.s2_files:
        s2 = np.stack([_read(inputs.s2_files[b], win) for b in S2_10M_BANDS]).astype(np.uint16)
        valid &= np.any(s2 != 0, axis=0)
        result.s2_strip = _write_strip(Path(work_dir) / f"s2_{row0:06d}.tif", s2, g.crs, wt, 0)
    if inputs.s1_files:
        s1 = np.stack([_warp(inputs.s1_files[p], g, win, inputs.s1_scale) for p in inputs.s1_files])
        valid &= np.isfinite(s1[0])
        result.s1_strip = _write_strip(Path(work_dir) / f"s1_{row0:06d}.tif", s1, g.crs, wt, np.nan)
    per_kind: dict[str, list[NDArray[np.float32]]] = {}
    for level in inputs.levels:
        frac = valid_fractions(valid, level)
        rr, cc = np.nonzero(frac >= inputs.min_valid)
        if rr.size == 0:
            continue
        r0 = row0 // level
        result.cells += [(level, r0 + int(r), int(c), float(frac[r, c])) for r, c in zip(rr, cc, strict=True)]
        parts: dict[str, NDArray[np.float32]] = {}
        if s2 is not None:
            stack = _cells(s2, level, rr, cc)
            refl = s2_dn_to_reflectance(stack, offset=inputs.s2_offset, nodata=0)
            parts["s2"] = S2_DESCRIPTOR.batch(refl)
            spectral = S2_SPECTRAL.batch(refl)
        if s1 is not None:
            parts["s1"] = S1_DESCRIPTOR.batch(_cells(s1[:1], level, rr, cc))
        if "s1" in parts and "s2" in parts:
            parts["fused"] = fuse_vectors(parts["s1"], spectral)
        for kind, vecs in parts.items():
            per_kind.setdefault(kind, []).append(vecs)
    result.vectors = {k: np.concatenate(v) for k, v in per_kind.items()}
    return result


def _cells(arr: NDArray[Any], level: int, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> NDArray[Any]:
    """The (n, bands, level, level) patches of the given cells of a strip (a view, then one gather)."""
    b, h, w = arr.shape
    nr, nc = h // level, w // level
    blocks = arr[:, : nr * level, : nc * level].reshape(b, nr, level, nc, level).transpose(1, 3, 0, 2, 4)
    return blocks[rows, cols]


def _read(path: str, win: Window) -> NDArray[Any]:
    try:
        with rasterio.open(path) as src:
            return src.read(1, window=win, boundless=True, fill_value=0)
    except rasterio.errors.RasterioIOError as err:
        raise InputDataError(path, f"cannot read raster: {err}") from err


def _warp(path: str, grid: Grid, win: Window, scale: str) -> NDArray[np.float32]:
    try:
        with rasterio.open(path) as src:
            nodata = src.nodata if src.nodata is not None else (0 if scale != "db" else None)
            with WarpedVRT(src, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
                           resampling=Resampling.average, src_nodata=nodata, nodata=np.nan,
                           dtype="float32") as vrt:
                band = vrt.read(1, window=win, boundless=False).astype(np.float32)
    except rasterio.errors.RasterioIOError as err:
        raise InputDataError(path, f"cannot read raster: {err}") from err
    lin = to_linear_intensity(band, scale)
    lin[~np.isfinite(lin) | (lin <= 0)] = np.nan
    return lin


def _write_strip(path: Path, data: NDArray[Any], crs: CRS, transform: Affine, nodata: float) -> str:
    profile = {"driver": "GTiff", "count": data.shape[0], "height": data.shape[1], "width": data.shape[2],
               "dtype": data.dtype.name, "crs": crs, "transform": transform, "nodata": nodata,
               "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "LZW"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return str(path)


@dataclass
class SceneResult:
    """Everything computed for one scene, before it is published."""

    inputs: SceneInputs
    cells: list[tuple[int, int, int, float]]
    vectors: dict[str, NDArray[np.float32]]
    s2_strips: list[str]
    s1_strips: list[str]


def run_scene(inputs: SceneInputs, work_dir: Path, client: Any = None,
              progress: Callable[[int, int], None] | None = None) -> SceneResult:
    """Process every strip (on dask when ``client`` is given) and gather the results in order.

    Args:
        inputs: From :func:`prepare`.
        work_dir: Folder for strip files (shared storage when workers run on other machines).
        client: A ``dask.distributed.Client``; None runs the strips here, one by one.
        progress: Called with (strips done, strips total).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    rows = strips(inputs)
    results: list[StripResult] = []
    if client is None:
        for i, r in enumerate(rows):
            results.append(process_strip(inputs, r, str(work_dir)))
            if progress:
                progress(i + 1, len(rows))
    else:
        from dask.distributed import as_completed

        futures = [client.submit(process_strip, inputs, r, str(work_dir), pure=False) for r in rows]
        for i, fut in enumerate(as_completed(futures)):
            results.append(fut.result())
            if progress:
                progress(i + 1, len(rows))
            fut.release()
    results.sort(key=lambda s: s.row0)
    cells = [c for s in results for c in s.cells]
    kinds = {k for s in results for k in s.vectors}
    vectors = {k: np.concatenate([s.vectors[k] for s in results if k in s.vectors]) for k in kinds}
    if not cells:
        raise InputDataError(next(iter((inputs.s2_files or inputs.s1_files or {"-": "-"}).values())),
                             "the scene holds no data (every patch is mostly nodata)")
    return SceneResult(inputs, cells, vectors, [s.s2_strip for s in results if s.s2_strip],
                       [s.s1_strip for s in results if s.s1_strip])


def assemble_cog(strip_files: list[str], grid: Grid, target: Path, band_names: Sequence[str]) -> Path:
    """Mosaic strip GeoTIFFs into one COG, strip by strip (bounded memory), then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    mosaic = tmp.with_suffix(".mosaic.tif")
    with rasterio.open(strip_files[0]) as first:
        profile = {**first.profile, "height": grid.height, "width": grid.width, "transform": grid.transform,
                   "BIGTIFF": "IF_SAFER"}
    try:
        with rasterio.open(mosaic, "w", **profile) as dst:
            for f in strip_files:
                with rasterio.open(f) as src:
                    row0 = round((src.transform.f - grid.transform.f) / grid.transform.e)
                    dst.write(src.read(), window=Window(0, row0, src.width, src.height))
            for i, name in enumerate(band_names, start=1):
                dst.set_band_description(i, name)
        rasterio.shutil.copy(mosaic, tmp, driver="COG", compress="DEFLATE", predictor=2, blocksize=512,
                             overview_resampling="average", BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS")
        os.replace(tmp, target)
    finally:
        mosaic.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return target


def default_work_dir(base: Path | None = None) -> Path:
    """A private temporary folder for strip files."""
    return Path(tempfile.mkdtemp(prefix="eofusion-strips-", dir=str(base) if base else None))


def cpu_count() -> int:
    """Cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
