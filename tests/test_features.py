"""Tests of the patch descriptors on real Sentinel-1 / Sentinel-2 patches.

Data:
* BigEarthNet-S1/S2 example pairs shipped in the ``bigearthnet-common`` wheel (6 co-registered
  S1 GRD VV/VH (dB) + S2 L2A patches, 120 x 120 px at 10 m).
* EuroSAT-MS patches (13-band uint16 L1C, 64 x 64 px) under ``../shared/data/eurosat-ms`` (or the fixture subset).

Synthetic pixels are only used where a property needs a controlled input (nodata patches).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from numpy.typing import NDArray

from eofusion.features import (
    S2_L2A_BANDS,
    Descriptor,
    DescriptorRegistry,
    FusedDescriptor,
    SpectralConfig,
    SpectralDescriptor,
    UnknownDescriptorError,
    WLDConfig,
    WLDDescriptor,
    db_to_linear,
    descriptors,
    fuse_vectors,
    s2_boa_offset,
    s2_dn_to_reflectance,
)
from tests.conftest import data_path
from tests.numerics import assert_sums_to

EUROSAT_DIR = data_path("eurosat-ms")
EUROSAT_BANDS = 13  # B01..B12 (with B10) then B8A
CLASSES = ("Forest", "SeaLake", "AnnualCrop", "Residential")


def _eurosat_rows() -> list[dict[str, str]]:
    with open(EUROSAT_DIR / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


# Patches per class the tests take: 8, or all of a smaller sample (the committed fixture holds 5 per class).
N_PER_CLASS = min(8, *(sum(r["label"] == c for r in _eurosat_rows()) for c in CLASSES))
assert N_PER_CLASS >= 4, f"not enough patches per class in {EUROSAT_DIR}"


# --------------------------------------------------------------------------------------------
# Data fixtures
# --------------------------------------------------------------------------------------------


def read_s1_db(patch_dir: Path) -> NDArray[np.float32]:
    """Read a BigEarthNet-S1 patch as a (2, 120, 120) VV/VH stack in dB."""
    bands = []
    for pol in ("VV", "VH"):
        (path,) = patch_dir.glob(f"*_{pol}.tif")
        with rasterio.open(path) as src:
            bands.append(src.read(1))
    return np.stack(bands)


def read_s2_reflectance(patch_dir: Path) -> NDArray[np.float32]:
    """Read a BigEarthNet-S2 patch as a (12, 120, 120) L2A reflectance stack on the 10 m grid.

    20 m and 60 m bands are upsampled by pixel replication (exact for histograms: every pixel
    is repeated the same number of times).
    """
    bands = []
    for band in S2_L2A_BANDS:
        (path,) = patch_dir.glob(f"*_{band}.tif")
        with rasterio.open(path) as src:
            dn = src.read(1)
        factor = 120 // dn.shape[0]
        bands.append(np.repeat(np.repeat(dn, factor, axis=0), factor, axis=1))
    # BigEarthNet v1 is processing baseline < 04.00: no BOA offset.
    return s2_dn_to_reflectance(np.stack(bands), offset=s2_boa_offset("02.14"))


@pytest.fixture(scope="session")
def ben_pairs(ben_root: tuple[Path, Path]) -> list[tuple[str, NDArray[np.float32], NDArray[np.float32]]]:
    """The 6 co-registered (name, S1 dB, S2 reflectance) pairs, paired via the S1 metadata."""
    s1_root, s2_root = ben_root
    pairs = []
    for s1_dir in sorted(p for p in s1_root.iterdir() if p.is_dir()):
        (meta_path,) = s1_dir.glob("*_labels_metadata.json")
        meta = json.loads(meta_path.read_text())
        s2_dir = s2_root / meta["corresponding_s2_patch"]
        pairs.append((s1_dir.name, read_s1_db(s1_dir), read_s2_reflectance(s2_dir)))
    assert len(pairs) == 6
    return pairs


@pytest.fixture(scope="session")
def s1_linear(ben_pairs: list[tuple[str, NDArray[np.float32], NDArray[np.float32]]]) -> NDArray[np.float64]:
    """(6, 2, 120, 120) S1 stacks in linear intensity."""
    return np.stack([db_to_linear(s1) for _, s1, _ in ben_pairs])


def read_eurosat(rel_path: str) -> NDArray[np.float32]:
    """Read a EuroSAT-MS patch (13 bands, L1C from 2015-2017: no offset) as reflectance."""
    with rasterio.open(EUROSAT_DIR / rel_path) as src:
        return s2_dn_to_reflectance(src.read(), offset=0)


@pytest.fixture(scope="session")
def eurosat() -> dict[str, NDArray[np.float32]]:
    """The first ``N_PER_CLASS`` Forest and SeaLake patches (and a few others) by class."""
    rows = _eurosat_rows()
    out = {}
    for label in CLASSES:
        paths = sorted(r["path"] for r in rows if r["label"] == label)[:N_PER_CLASS]
        assert len(paths) == N_PER_CLASS, f"not enough {label} patches in {EUROSAT_DIR}"
        out[label] = np.stack([read_eurosat(p) for p in paths])
    return out


@pytest.fixture(scope="session")
def eurosat_spectral() -> SpectralDescriptor:
    return SpectralDescriptor(SpectralConfig(n_bands=EUROSAT_BANDS))


def _pairwise_l1(a: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.float64]:
    return np.abs(a[:, None, :].astype(np.float64) - b[None, :, :]).sum(axis=-1)


# --------------------------------------------------------------------------------------------
# Registry and metadata
# --------------------------------------------------------------------------------------------


def test_default_registry_holds_the_descriptors() -> None:
    assert descriptors.list() == ["fused", "s2texture", "spectral", "wld"]
    assert isinstance(descriptors.get("wld"), WLDDescriptor)
    assert isinstance(descriptors["spectral"], SpectralDescriptor)
    assert isinstance(descriptors.get("fused"), FusedDescriptor)
    assert "wld" in descriptors and len(descriptors) == 4
    dims = {name: descriptors.get(name).dim for name in descriptors}
    assert dims == {"wld": 64, "spectral": 224, "fused": 288, "s2texture": 160}
    sensors = {name: descriptors.get(name).sensor for name in descriptors}
    assert sensors == {"wld": "s1", "spectral": "s2", "fused": "fused", "s2texture": "s2"}
    for name in descriptors:
        meta = descriptors.get(name).metadata()
        assert meta["name"] == name and meta["dim"] == dims[name] and meta["version"]
        json.dumps(meta)  # JSON-serialisable for the API


def test_registry_rejects_unknown_name_listing_known_ones() -> None:
    with pytest.raises(KeyError) as excinfo:
        descriptors.get("sift")
    message = str(excinfo.value)
    assert "sift" in message
    for known in ("wld", "spectral", "fused"):
        assert known in message
    # Also a ValueError, for callers validating user input.
    with pytest.raises(ValueError, match="known descriptors: fused, s2texture, spectral, wld"):
        descriptors["hog"]
    assert isinstance(excinfo.value, UnknownDescriptorError)


def test_registry_register_and_duplicates() -> None:
    registry = DescriptorRegistry()
    with pytest.raises(KeyError, match=r"\(none\)"):
        registry.get("wld")
    custom = WLDDescriptor(WLDConfig(excitation_bins=6, orientation_bins=4))
    registry.register(custom)
    assert registry.get("wld") is custom and registry.get("wld").dim == 24
    with pytest.raises(ValueError, match="already registered"):
        registry.register(WLDDescriptor())
    registry.register(WLDDescriptor(), overwrite=True)
    assert registry.get("wld").dim == 64
    registry.register(custom, name="wld-small")
    assert registry.list() == ["wld", "wld-small"]
    with pytest.raises(TypeError):
        registry.register("wld")  # type: ignore[arg-type]


def test_descriptor_is_abstract() -> None:
    with pytest.raises(TypeError):
        Descriptor()  # type: ignore[abstract]


# --------------------------------------------------------------------------------------------
# WLD (Sentinel-1)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [3.7, 0.01, 1e6])
def test_wld_invariant_to_positive_scaling(s1_linear: NDArray[np.float64], factor: float) -> None:
    wld = WLDDescriptor()
    reference = wld.batch(s1_linear)
    scaled = wld.batch(s1_linear * factor)
    np.testing.assert_allclose(scaled, reference, rtol=0, atol=1e-6)
    # Not a trivial constant: the 6 real patches give distinct histograms.
    assert _pairwise_l1(reference, reference)[np.triu_indices(6, 1)].min() > 0.01


def test_wld_gain_step_only_changes_pixels_near_the_step(s1_linear: NDArray[np.float64]) -> None:
    """Ratios are local: a gain step across the patch only affects pixels whose windows straddle it.

    With ring and ROA radius 3, only the 6 columns 57..62 see both sides of a step between
    columns 59 and 60; the rest keep the same bins. Both histograms count the same pixels, so their
    L1 distance is at most 2 * 6 / 120 = 0.1. A difference-based (non-ratio) excitation or any
    additive offset breaks this bound.
    """
    wld = WLDDescriptor()
    stepped = s1_linear.copy()
    stepped[:, :, :, :60] *= 3.7
    l1 = np.abs(wld.batch(stepped).astype(np.float64) - wld.batch(s1_linear)).sum(axis=1)
    assert (l1 <= 2 * 6 / 120 + 1e-6).all(), l1
    assert (l1 > 0).all()  # the seam pixels do change: the test is not vacuous


def test_wld_invariant_to_scaling_with_nodata(s1_linear: NDArray[np.float64]) -> None:
    wld = WLDDescriptor()
    patch = s1_linear[0].copy()
    patch[0, 30:60, 40:90] = np.nan  # nodata hole
    patch[0, :5, :] = 0.0  # zero-filled border, as after terrain correction
    vec = wld(patch)
    assert np.isfinite(vec).all()
    assert_sums_to(vec, 1.0)
    np.testing.assert_allclose(wld(patch * 3.7), vec, rtol=0, atol=1e-6)
    assert not np.allclose(vec, wld(s1_linear[0]))


def test_wld_histograms_sum_to_one_and_use_several_bins(s1_linear: NDArray[np.float64]) -> None:
    vectors = WLDDescriptor().batch(s1_linear)
    assert vectors.shape == (6, 64) and vectors.dtype == np.float32
    assert_sums_to(vectors, 1.0, axis=1)
    assert (vectors >= 0).all()
    # Real speckled texture spreads over many excitation x orientation cells.
    assert ((vectors > 0).sum(axis=1) >= 32).all()


def test_wld_db_and_amplitude_flags(
    ben_pairs: list[tuple[str, NDArray[np.float32], NDArray[np.float32]]],
) -> None:
    _, s1_db, _ = ben_pairs[0]
    linear = WLDDescriptor()(db_to_linear(s1_db))
    from_db = WLDDescriptor(WLDConfig(scale="db"))(s1_db)
    from_amplitude = WLDDescriptor(WLDConfig(scale="amplitude"))(np.sqrt(db_to_linear(s1_db)))
    np.testing.assert_allclose(from_db, linear, atol=1e-6)
    np.testing.assert_allclose(from_amplitude, linear, atol=1e-6)
    # Using dB values as if they were linear is a different (wrong) input: it must show.
    vh = WLDDescriptor(WLDConfig(band=1))(db_to_linear(s1_db))
    assert not np.allclose(vh, linear)


def test_wld_batch_equals_per_patch_calls(s1_linear: NDArray[np.float64]) -> None:
    wld = WLDDescriptor()
    stacked = np.stack([wld(patch) for patch in s1_linear])
    np.testing.assert_array_equal(wld.batch(s1_linear), stacked)
    # A single band (h, w) array is accepted too.
    np.testing.assert_array_equal(wld(s1_linear[2, 0]), stacked[2])


def test_wld_same_file_read_twice_is_identical(ben_root: tuple[Path, Path]) -> None:
    s1_root, _ = ben_root
    patch_dir = sorted(p for p in s1_root.iterdir() if p.is_dir())[3]
    first = WLDDescriptor()(db_to_linear(read_s1_db(patch_dir)))
    second = WLDDescriptor()(db_to_linear(read_s1_db(patch_dir)))
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("fill", [np.nan, 0.0])
def test_wld_all_nodata_raises(fill: float) -> None:
    wld = WLDDescriptor()
    with pytest.raises(ValueError, match="no valid"):
        wld(np.full((2, 32, 32), fill))


def test_wld_batch_names_the_nodata_patch(s1_linear: NDArray[np.float64]) -> None:
    stack = s1_linear[:3].copy()
    stack[1] = np.nan
    with pytest.raises(ValueError, match=r"\[1\]"):
        WLDDescriptor().batch(stack)


def test_wld_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        WLDDescriptor().batch(np.ones((32, 32)))
    with pytest.raises(ValueError, match="band"):
        WLDDescriptor(WLDConfig(band=1)).batch(np.ones((1, 1, 32, 32)))


# --------------------------------------------------------------------------------------------
# Spectral (Sentinel-2)
# --------------------------------------------------------------------------------------------


def test_dn_to_reflectance_and_baseline_offset() -> None:
    dn = np.array([0, 1000, 2000, 11000], dtype=np.uint16)
    np.testing.assert_allclose(s2_dn_to_reflectance(dn), [np.nan, 0.1, 0.2, 1.1], rtol=1e-6)
    np.testing.assert_allclose(
        s2_dn_to_reflectance(dn, offset=s2_boa_offset("04.00")), [np.nan, 0.0, 0.1, 1.0], atol=1e-7
    )
    assert s2_boa_offset("05.09") == -1000
    assert s2_boa_offset("03.01") == 0
    assert s2_boa_offset("02.14") == 0


def test_spectral_sums_to_one_and_each_band_block_too(
    eurosat: dict[str, NDArray[np.float32]], eurosat_spectral: SpectralDescriptor
) -> None:
    cfg = eurosat_spectral.config
    for patches in eurosat.values():
        vectors = eurosat_spectral.batch(patches)
        assert vectors.shape == (N_PER_CLASS, 13 * 16 + 2 * 16) == (N_PER_CLASS, eurosat_spectral.dim)
        assert_sums_to(vectors, 1.0, axis=1)
        band_part = vectors[:, : cfg.n_bands * cfg.bins].reshape(N_PER_CLASS, cfg.n_bands, cfg.bins)
        index_part = vectors[:, cfg.n_bands * cfg.bins :].reshape(N_PER_CLASS, 2, cfg.index_bins)
        n_hist = cfg.n_bands + 2
        assert_sums_to(band_part, 1.0 / n_hist, axis=2)
        assert_sums_to(index_part, 1.0 / n_hist, axis=2)


def test_spectral_bins_are_fixed_not_per_patch(eurosat: dict[str, NDArray[np.float32]]) -> None:
    spectral = SpectralDescriptor(SpectralConfig(n_bands=EUROSAT_BANDS, with_indices=False))
    patch = eurosat["Forest"][0]
    vec = spectral(patch)
    assert spectral.dim == 13 * 16
    # Fixed edges: doubling reflectance must move mass to higher bins (a per-patch min/max
    # histogram would not change).
    assert not np.allclose(spectral(patch * 2), vec)
    # Water (band B08, index 7) is dark in the NIR: mass in the lowest bins of that band.
    water_nir = spectral(eurosat["SeaLake"][0]).reshape(13, 16)[7] * 13
    assert water_nir[:2].sum() > 0.8
    # Reflectance above the range is clipped into the last bin, not dropped.
    bright = spectral(np.full((13, 8, 8), 0.95, dtype=np.float32)).reshape(13, 16) * 13
    np.testing.assert_allclose(bright[:, -1], 1.0)


def test_spectral_water_far_from_forest(
    eurosat: dict[str, NDArray[np.float32]], eurosat_spectral: SpectralDescriptor
) -> None:
    forest = eurosat_spectral.batch(eurosat["Forest"])
    water = eurosat_spectral.batch(eurosat["SeaLake"])
    upper = np.triu_indices(N_PER_CLASS, 1)
    within = np.concatenate([_pairwise_l1(forest, forest)[upper], _pairwise_l1(water, water)[upper]]).mean()
    between = _pairwise_l1(forest, water).mean()
    assert between > 1.5 * within, (between, within)
    # Leave-one-out 1-NN over Forest + SeaLake recovers the class of every patch.
    both = np.concatenate([forest, water])
    labels = np.array([0] * N_PER_CLASS + [1] * N_PER_CLASS)
    dist = _pairwise_l1(both, both)
    np.fill_diagonal(dist, np.inf)
    assert (labels[dist.argmin(axis=1)] == labels).all()


def test_spectral_indices_help_separate_land_cover(eurosat: dict[str, NDArray[np.float32]]) -> None:
    """NDVI/NDWI alone separate vegetation from water better than chance by a wide margin."""
    full = SpectralDescriptor(SpectralConfig(n_bands=EUROSAT_BANDS))
    cfg = full.config
    start = cfg.n_bands * cfg.bins
    idx = {label: full.batch(patches)[:, start:] for label, patches in eurosat.items()}
    ndvi_forest = idx["Forest"][:, : cfg.index_bins].sum(axis=0)
    ndvi_water = idx["SeaLake"][:, : cfg.index_bins].sum(axis=0)
    centres = np.linspace(-1, 1, cfg.index_bins, endpoint=False) + 1 / cfg.index_bins
    assert (ndvi_forest @ centres) / ndvi_forest.sum() > 0.5  # forest: high NDVI
    assert (ndvi_water @ centres) / ndvi_water.sum() < 0.0  # water: negative NDVI


def test_spectral_batch_equals_per_patch_calls(
    eurosat: dict[str, NDArray[np.float32]], eurosat_spectral: SpectralDescriptor
) -> None:
    patches = np.concatenate([eurosat["Residential"], eurosat["AnnualCrop"]])
    stacked = np.stack([eurosat_spectral(p) for p in patches])
    np.testing.assert_array_equal(eurosat_spectral.batch(patches), stacked)


def test_spectral_same_file_read_twice_is_identical(eurosat_spectral: SpectralDescriptor) -> None:
    rel = sorted(r["path"] for r in _eurosat_rows() if r["label"] == "River")[0]
    np.testing.assert_array_equal(eurosat_spectral(read_eurosat(rel)), eurosat_spectral(read_eurosat(rel)))


def test_spectral_nodata(eurosat: dict[str, NDArray[np.float32]], eurosat_spectral: SpectralDescriptor) -> None:
    with pytest.raises(ValueError, match="no valid"):
        eurosat_spectral(s2_dn_to_reflectance(np.zeros((13, 16, 16), dtype=np.uint16)))
    # Partially missing pixels are skipped, the result still sums to 1.
    patch = eurosat["AnnualCrop"][0].copy()
    patch[:, :20, :] = np.nan
    vec = eurosat_spectral(patch)
    assert_sums_to(vec, 1.0)
    np.testing.assert_allclose(vec, eurosat_spectral(eurosat["AnnualCrop"][0][:, 20:, :]), atol=1e-6)


def test_spectral_rejects_wrong_band_count(eurosat: dict[str, NDArray[np.float32]]) -> None:
    with pytest.raises(ValueError, match="12 band"):
        SpectralDescriptor().batch(eurosat["Forest"])  # 13 EuroSAT bands, default is 12 (L2A)
    with pytest.raises(ValueError, match="nir"):
        SpectralConfig(n_bands=4, nir=None)


# --------------------------------------------------------------------------------------------
# Fused (Sentinel-1 + Sentinel-2)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fused_stack(
    ben_pairs: list[tuple[str, NDArray[np.float32], NDArray[np.float32]]],
) -> NDArray[np.float64]:
    """(6, 2 + 12, 120, 120): linear VV, VH then the 12 L2A reflectance bands."""
    return np.stack([np.concatenate([db_to_linear(s1), s2]) for _, s1, s2 in ben_pairs])


def test_fused_sums_to_one_with_balanced_parts(fused_stack: NDArray[np.float64]) -> None:
    fused = FusedDescriptor()
    vectors = fused.batch(fused_stack)
    assert vectors.shape == (6, 288) and fused.input_nbands == 14
    assert_sums_to(vectors, 1.0, axis=1)
    assert_sums_to(vectors[:, :64], 0.5, axis=1)
    assert_sums_to(vectors[:, 64:], 0.5, axis=1)
    # Each half is its part's histogram scaled by 0.5.
    np.testing.assert_allclose(vectors[:, :64], 0.5 * WLDDescriptor().batch(fused_stack[:, :2]), atol=1e-7)
    np.testing.assert_allclose(vectors[:, 64:], 0.5 * SpectralDescriptor().batch(fused_stack[:, 2:]), atol=1e-7)


def test_fused_from_parts_matches_stacked(
    ben_pairs: list[tuple[str, NDArray[np.float32], NDArray[np.float32]]], fused_stack: NDArray[np.float64]
) -> None:
    fused = FusedDescriptor()
    stacked = fused.batch(fused_stack)
    for i, (_, s1_db, s2) in enumerate(ben_pairs):
        np.testing.assert_array_equal(fused.from_parts(db_to_linear(s1_db), s2), stacked[i])
        np.testing.assert_array_equal(fused(fused_stack[i]), stacked[i])
    # S2 at a different grid than S1 (20 m: keep every second pixel) is accepted by batch_parts.
    coarse = fused.batch_parts(fused_stack[:, :2], fused_stack[:, 2:, ::2, ::2])
    assert_sums_to(coarse, 1.0, axis=1)


def test_fused_invariant_to_s1_scaling(fused_stack: NDArray[np.float64]) -> None:
    fused = FusedDescriptor()
    scaled = fused_stack.copy()
    scaled[:, :2] *= 0.01
    np.testing.assert_allclose(fused.batch(scaled), fused.batch(fused_stack), rtol=0, atol=1e-6)


def test_fused_same_file_read_twice_is_identical(ben_root: tuple[Path, Path]) -> None:
    s1_root, s2_root = ben_root
    s1_dir = sorted(p for p in s1_root.iterdir() if p.is_dir())[1]
    (meta_path,) = s1_dir.glob("*_labels_metadata.json")
    s2_dir = s2_root / json.loads(meta_path.read_text())["corresponding_s2_patch"]
    runs = [
        FusedDescriptor().from_parts(db_to_linear(read_s1_db(s1_dir)), read_s2_reflectance(s2_dir)) for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0], runs[1])


def test_fused_nodata_in_either_part_raises(fused_stack: NDArray[np.float64]) -> None:
    fused = FusedDescriptor()
    no_s1 = fused_stack[0].copy()
    no_s1[:2] = np.nan
    with pytest.raises(ValueError, match="wld"):
        fused(no_s1)
    no_s2 = fused_stack[0].copy()
    no_s2[2:] = np.nan
    with pytest.raises(ValueError, match="spectral"):
        fused(no_s2)


def test_fuse_vectors_weights() -> None:
    a = np.array([2.0, 2.0])
    b = np.array([1.0, 0.0, 3.0])
    np.testing.assert_allclose(fuse_vectors(a, b), [0.25, 0.25, 0.125, 0.0, 0.375])
    np.testing.assert_allclose(fuse_vectors(a, b, s1_weight=0.2).sum(), 1.0)
    with pytest.raises(ValueError):
        fuse_vectors(np.zeros(2), b)
    with pytest.raises(ValueError):
        fuse_vectors(a, b, s1_weight=1.5)


def test_s2_texture_descriptor_is_colour_and_texture(eurosat: dict[str, NDArray[np.float32]]) -> None:
    """The stored S2 descriptor: NIR texture (64) then the 10 m spectral histogram (96), half weight each."""
    from eofusion.features import S2TextureDescriptor, descriptors

    d = descriptors.get("s2texture")
    assert isinstance(d, S2TextureDescriptor) and d.dim == 160
    patches = np.concatenate([v[:, [1, 2, 3, 7]] for v in eurosat.values()])  # B02 B03 B04 B08
    vecs = d.batch(patches)
    assert_sums_to(vecs, 1, axis=1)
    assert_sums_to(vecs[:, :64], 0.5, axis=1)
    # Texture is gain-invariant (ratio-based); the spectral part is not (reflectance bins are fixed).
    scaled = d.batch(patches * 1.7)
    # float32 rounding of the scaled pixels may move a handful of the 4096 pixels across a bin edge
    assert np.abs(scaled[:, :64] - vecs[:, :64]).sum(axis=1).max() < 5e-3
    assert not np.allclose(scaled[:, 64:], vecs[:, 64:])
