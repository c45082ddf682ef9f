"""One scene, strip by strip: read S2 (and S1 warped onto the S2 grid), cut the grids, describe patches.

The scene is split into horizontal strips one coarsest cell high. A strip is an independent task:
it reads only its window from the input files (S1 through a ``WarpedVRT`` onto the S2 grid), writes
its aligned pixels to a strip GeoTIFF and returns the cells and descriptors of every level inside
it. Strips run on dask.distributed (a LocalCluster sized to the machine, or an existing scheduler),
so memory stays bounded by a few strips per worker whatever the scene size; the strip files are
then assembled into the scene COGs.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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
from eofusion.pipeline.coregister import average_translated, translation
from eofusion.pipeline.strip_features import CellSelection, spectral_by_level, wld_by_level
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
#: GDAL's block cache per process (MB) for strips and for the COG assembly; its default, 5% of
#: the RAM, grows with the machine (and so would the peak memory of an ingest).
GDAL_CACHE_MB = 256
ASSEMBLY_CACHE_MB = 512
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
        # A 4 x 4 grid of small windows tells dB (mostly negative) from linear without decoding the
        # whole file (an overview-sized read of a file without overviews decodes every block: 2.4 s
        # of CPU on a full tile). Mostly empty samples fall back to that read.
        size = 64
        rows = np.linspace(0, max(src.height - size, 0), 4).astype(int)
        cols = np.linspace(0, max(src.width - size, 0), 4).astype(int)
        parts = [src.read(1, window=Window(int(c), int(r), min(size, src.width), min(size, src.height)),
                          masked=True).astype(np.float32).filled(np.nan).ravel() for r in rows for c in cols]
        sample = np.concatenate(parts)
        if np.isfinite(sample).sum() < 1000:
            full = src.read(1, out_shape=(min(src.height, 512), min(src.width, 512)), masked=True)
            sample = full.astype(np.float32).filled(np.nan)
    return guess_scale(sample)


def _check_overlap(grid: Grid, s1: Grid, path: Path) -> None:
    from rasterio.transform import array_bounds
    from rasterio.warp import transform_bounds

    a = array_bounds(grid.height, grid.width, grid.transform)
    b = transform_bounds(s1.crs, grid.crs, *array_bounds(s1.height, s1.width, s1.transform), densify_pts=21)
    if min(a[2], b[2]) <= max(a[0], b[0]) or min(a[3], b[3]) <= max(a[1], b[1]):
        raise InputDataError(path, "Sentinel-1 and Sentinel-2 scenes do not overlap")


def strips(inputs: SceneInputs) -> list[int]:
    """Top rows of the strips: one coarsest cell high, the last one whatever height remains."""
    return list(range(0, inputs.grid.height, inputs.levels[0]))


_MALLOC_TUNED = False


def _tune_malloc() -> None:
    """Let glibc keep freed numpy temporaries for reuse instead of unmapping them (once per process).

    dask's nanny sets ``MALLOC_TRIM_THRESHOLD_``, which freezes malloc's mmap threshold at 128 kB,
    so every temporary above that was mapped, page-faulted and zeroed again: ~40% of the strip
    CPU went to the kernel. Above 32 MB (glibc's ceiling) buffers are still mapped; the strip
    passes work in chunks well below that.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED or not sys.platform.startswith("linux"):
        return
    _MALLOC_TUNED = True
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(-3, 32 * 1024 * 1024)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD


def process_strip(inputs: SceneInputs, row0: int, work_dir: str) -> StripResult:
    """Read, co-register and describe one strip; write its aligned pixels to strip GeoTIFFs.

    The strip spans the full width of the grid and ``levels[0]`` rows (fewer for the last strip);
    every full cell of every level inside it is cut, so a scene whose size is not a multiple of
    the coarsest level still gets all its finer cells.
    """
    _tune_malloc()
    g, step = inputs.grid, inputs.levels[0]
    height = min(step, g.height - row0)
    win = Window(0, row0, g.width, height)
    wt = window_transform(win, g.transform)
    result = StripResult(row0)
    valid = np.ones((height, g.width), dtype=bool)
    s2 = s1 = None
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        if inputs.s2_files:
            s2 = np.stack([_read(inputs.s2_files[b], win) for b in S2_10M_BANDS]).astype(np.uint16, copy=False)
            valid &= np.any(s2 != 0, axis=0)
            result.s2_strip = _write_strip(Path(work_dir) / f"s2_{row0:06d}.tif", s2, g.crs, wt, 0)
        if inputs.s1_files:
            s1 = np.stack([_warp(inputs.s1_files[p], g, win, inputs.s1_scale) for p in inputs.s1_files])
            valid &= np.isfinite(s1[0])
            result.s1_strip = _write_strip(Path(work_dir) / f"s1_{row0:06d}.tif", s1, g.crs, wt, np.nan)
    selections: list[CellSelection] = []
    for level in inputs.levels:
        if level > height:
            continue
        frac = valid_fractions(valid, level)
        rr, cc = np.nonzero(frac >= inputs.min_valid)
        if rr.size == 0:
            continue
        r0 = row0 // level
        result.cells += [(level, r0 + int(r), int(c), float(frac[r, c])) for r, c in zip(rr, cc, strict=True)]
        selections.append(CellSelection(level, rr, cc))
    per_level: dict[str, dict[int, NDArray[np.float32]]] = {}
    if s2 is not None and selections:
        refl = _reflectance_lut(inputs.s2_offset)[s2]
        spectral = spectral_by_level(refl, S2_SPECTRAL.config, selections, S2_SPECTRAL.name)
        texture_cfg = S2_DESCRIPTOR.texture.config
        texture = wld_by_level(refl[texture_cfg.band], texture_cfg, selections, S2_DESCRIPTOR.texture.name)
        per_level["s2"] = {lv: fuse_vectors(texture[lv], spectral[lv], S2_DESCRIPTOR.texture_weight)
                           for lv in spectral}
    if s1 is not None and selections:
        s1_cfg = S1_DESCRIPTOR.config
        per_level["s1"] = wld_by_level(s1[s1_cfg.band], s1_cfg, selections, S1_DESCRIPTOR.name)
        if s2 is not None:
            per_level["fused"] = {lv: fuse_vectors(per_level["s1"][lv], spectral[lv]) for lv in spectral}
    result.vectors = {k: np.concatenate([v[s.level] for s in selections]) for k, v in per_level.items()}
    return result


@functools.lru_cache(maxsize=4)
def _reflectance_lut(offset: int) -> NDArray[np.float32]:
    """:func:`s2_dn_to_reflectance` of every uint16 digital number: a table lookup gives the same values, 5x faster."""
    return s2_dn_to_reflectance(np.arange(65536, dtype=np.uint16), offset=offset, nodata=0)


def describe_windows(inputs: SceneInputs, level: int, row: int, col: int) -> dict[str, NDArray[np.float32]]:
    """The descriptors of one cell computed from its own window alone (the reference for the strip path).

    Reads the cell's window from the inputs as :func:`process_strip` does and calls the
    descriptors' ``batch`` on it: slow, for checks.
    """
    g = inputs.grid
    win = Window(col * level, row * level, level, level)
    out: dict[str, NDArray[np.float32]] = {}
    spectral = None
    if inputs.s2_files:
        s2 = np.stack([_read(inputs.s2_files[b], win) for b in S2_10M_BANDS]).astype(np.uint16, copy=False)
        refl = s2_dn_to_reflectance(s2[None], offset=inputs.s2_offset, nodata=0)
        out["s2"] = S2_DESCRIPTOR.batch(refl)[0]
        spectral = S2_SPECTRAL.batch(refl)
    if inputs.s1_files:
        s1 = np.stack([_warp(inputs.s1_files[p], g, win, inputs.s1_scale) for p in inputs.s1_files])
        out["s1"] = S1_DESCRIPTOR.batch(s1[None, :1])[0]
        if spectral is not None:
            out["fused"] = fuse_vectors(out["s1"][None], spectral)[0]
    return out


def _read(path: str, win: Window) -> NDArray[Any]:
    try:
        with rasterio.open(path) as src:
            return src.read(1, window=win, boundless=True, fill_value=0)
    except rasterio.errors.RasterioIOError as err:
        raise InputDataError(path, f"cannot read raster: {err}") from err


def _warp(path: str, grid: Grid, win: Window, scale: str) -> NDArray[np.float32]:
    """Band 1 of ``path`` resampled (area-weighted average) onto a window of ``grid``, in linear intensity.

    A source on the grid's CRS and pixel size, only translated, is averaged directly
    (:mod:`eofusion.pipeline.coregister`: GDAL's values within float32 rounding, a fraction of
    the warper's CPU); anything else goes through GDAL's ``WarpedVRT``.
    """
    try:
        with rasterio.open(path) as src:
            nodata = src.nodata if src.nodata is not None else (0 if scale != "db" else None)
            shift = translation(src, grid.crs, grid.transform, nodata)
            if shift is not None and nodata is not None:
                band = average_translated(src, shift, win, nodata)
            else:
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
    # Uncompressed: a strip file lives for seconds and is read once; compressing it cost more CPU
    # than the final COG (and LZW made speckled float32 larger than the raw pixels).
    profile = {"driver": "GTiff", "count": data.shape[0], "height": data.shape[1], "width": data.shape[2],
               "dtype": data.dtype.name, "crs": crs, "transform": transform, "nodata": nodata,
               "tiled": True, "blockxsize": 512, "blockysize": 512, "interleave": "pixel"}
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
              progress: Callable[[int, int], None] | None = None,
              on_strip: Callable[[StripResult], None] | None = None) -> SceneResult:
    """Process every strip (on dask when ``client`` is given) and gather the results in order.

    Args:
        inputs: From :func:`prepare`.
        work_dir: Folder for strip files (shared storage when workers run on other machines).
        client: A ``dask.distributed.Client``; None runs the strips here, one by one.
        progress: Called with (strips done, strips total).
        on_strip: Called with each strip's result as it arrives (in completion order), e.g. to
            write its rows while the other strips are still being computed.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    rows = strips(inputs)
    results: list[StripResult] = []
    if client is None:
        for i, r in enumerate(rows):
            results.append(process_strip(inputs, r, str(work_dir)))
            if on_strip:
                on_strip(results[-1])
            if progress:
                progress(i + 1, len(rows))
    else:
        from dask.distributed import as_completed

        futures = [client.submit(process_strip, inputs, r, str(work_dir), pure=False) for r in rows]
        for i, fut in enumerate(as_completed(futures)):
            results.append(fut.result())
            if on_strip:
                on_strip(results[-1])
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


@dataclass(frozen=True)
class CogOptions:
    """Compression of a scene COG, chosen per data type (creation options of GDAL's COG driver)."""

    compress: str
    level: int | None = None
    predictor: int | None = None

    def creation_options(self) -> dict[str, Any]:
        """The options for ``rasterio.shutil.copy(..., driver="COG")``."""
        opts: dict[str, Any] = {"compress": self.compress}
        if self.level is not None:
            opts["level"] = self.level
        if self.predictor is not None:
            opts["predictor"] = self.predictor
        return opts


#: uint16 digital numbers: ZSTD level 1 with horizontal differencing compresses about as well as
#: DEFLATE at a third of its CPU. float32 backscatter: speckle leaves nothing to compress (DEFLATE
#: or ZSTD with the floating-point predictor made the S1 COG larger than its raw pixels), so no
#: compression. Measured in bench/results_ingest.md.
COG_BLOCKSIZE = 512
COG_OPTIONS: dict[str, CogOptions] = {"uint16": CogOptions("ZSTD", 1, 2), "float32": CogOptions("NONE")}
def overview_factors(height: int, width: int, blocksize: int = COG_BLOCKSIZE) -> list[int]:
    """The overview levels GDAL's COG driver makes: halve until the image fits one block."""
    factors: list[int] = []
    f = 1
    while max(height, width) / f > blocksize:
        f *= 2
        factors.append(f)
    return factors


class CogAssembler:
    """Builds one scene COG from its strip GeoTIFFs, the strips copied in as they arrive.

    The strips go into an uncompressed temporary mosaic, on a thread of this assembler's own, while the
    other strips are still computed; :meth:`finish` builds the mosaic's overviews (average) and lets the
    COG driver copy pixels and overviews and compress them (:data:`COG_OPTIONS`) on every core. Letting
    the COG driver compute the overviews itself took 3x the CPU (its odd overview sizes round down where
    GDAL's overview builder rounds up: 1372 vs 1373 px at 1/8 of a 10980 px tile); a VRT of the strips as
    its source was slower still. Every GDAL call on the mosaic runs on the one thread.
    """

    def __init__(self, grid: Grid, target: Path, band_names: Sequence[str]) -> None:
        """Prepare (nothing is written before the first strip).

        Args:
            grid: The scene grid the strips tile (full-width strips).
            target: The COG to create; replaced atomically by :meth:`finish`.
            band_names: Band descriptions.
        """
        self.grid, self.target, self.band_names = grid, target, tuple(band_names)
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_orphans(target)
        self._tmp = target.with_name(f".{target.name}.{os.getpid()}")
        self._mosaic = target.with_name(f".{target.name}.{os.getpid()}.mosaic.tif")
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"cog-{target.stem}")
        self._pending: list[Future[None]] = []
        self._dst: Any = None
        self._options = CogOptions("ZSTD", 1)
        self._closed = False

    def add(self, strip_file: str) -> None:
        """Queue a strip file for copying into the mosaic (returns at once)."""
        self._pending.append(self._thread.submit(self._write, strip_file))

    def _write(self, strip_file: str) -> None:
        with rasterio.Env(GDAL_CACHEMAX=ASSEMBLY_CACHE_MB), rasterio.open(strip_file) as src:
            if self._dst is None:
                self._options = COG_OPTIONS.get(src.dtypes[0], CogOptions("ZSTD", 1))
                # Band interleaving halves the overview CPU; the COG driver writes compressed COGs pixel-
                # interleaved whatever its source, but keeps an uncompressed source's layout.
                profile = {**src.profile, "height": self.grid.height, "width": self.grid.width,
                           "transform": self.grid.transform, "BIGTIFF": "IF_SAFER",
                           "interleave": "pixel" if self._options.compress == "NONE" else "band"}
                profile.pop("compress", None)
                self._dst = rasterio.open(self._mosaic, "w", **profile)
            row0 = round((src.transform.f - self.grid.transform.f) / self.grid.transform.e)
            self._dst.write(src.read(), window=Window(0, row0, src.width, src.height))

    def finish(self) -> Path:
        """Wait for the strips, build overviews, write the COG and rename it into place.

        Raises:
            ValueError: If no strip was added.
        """
        try:
            for fut in self._pending:
                fut.result()
            if self._dst is None:
                raise ValueError(f"{self.target}: no strips to assemble")
            self._thread.submit(self._finish).result()
            os.replace(self._tmp, self.target)
            return self.target
        finally:
            self.abort()

    def _finish(self) -> None:
        dst = self._dst
        with rasterio.Env(GDAL_CACHEMAX=ASSEMBLY_CACHE_MB):
            for i, name in enumerate(self.band_names, start=1):
                dst.set_band_description(i, name)
            factors = overview_factors(self.grid.height, self.grid.width)
            if factors:
                dst.build_overviews(factors, Resampling.average)
            dst.close()
            rasterio.shutil.copy(self._mosaic, self._tmp, driver="COG", blocksize=COG_BLOCKSIZE,
                                 overview_resampling="average", OVERVIEWS="FORCE_USE_EXISTING" if factors else "NONE",
                                 BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS", **self._options.creation_options())

    def abort(self) -> None:
        """Stop and remove the temporary files (the target is left as it was, unless :meth:`finish` replaced it).

        Safe to call more than once.
        """
        if self._closed:
            return
        self._closed = True
        for fut in self._pending:
            fut.cancel()
        self._thread.submit(self._close).result()
        self._thread.shutdown(wait=True)
        self._mosaic.unlink(missing_ok=True)
        self._tmp.unlink(missing_ok=True)

    def _close(self) -> None:
        if self._dst is not None and not self._dst.closed:
            self._dst.close()


def _remove_orphans(target: Path) -> None:
    """Delete the temporary files of earlier assemblies of ``target`` whose process is gone (a killed ingest)."""
    for f in target.parent.glob(f".{target.name}.*"):
        pid = f.name[len(target.name) + 2:].split(".")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
            f.unlink(missing_ok=True)


def assemble_cog(strip_files: list[str], grid: Grid, target: Path, band_names: Sequence[str]) -> Path:
    """Mosaic strip GeoTIFFs into one COG (:class:`CogAssembler`, all strips at once)."""
    assembler = CogAssembler(grid, target, band_names)
    for f in strip_files:
        assembler.add(f)
    return assembler.finish()


def default_work_dir(base: Path | None = None) -> Path:
    """A private temporary folder for strip files."""
    return Path(tempfile.mkdtemp(prefix="eofusion-strips-", dir=str(base) if base else None))


def cpu_count() -> int:
    """Cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
