"""Multispectral histogram descriptor for Sentinel-2 reflectance patches.

Each band is histogrammed over *fixed* reflectance bins (not per-patch min/max), so that the
same bin means the same reflectance in every scene and vectors are comparable across tiles and
dates. Optionally the NDVI and NDWI histograms are appended: they separate vegetation, water and
bare/built surfaces much better than any single band.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from eofusion.features.base import Descriptor, FloatArray, Sensor, Vector

#: Sentinel-2 L2A band order used by BigEarthNet and the SAFE product (B10 is absent in L2A).
S2_L2A_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12",
)  # fmt: skip


def s2_boa_offset(processing_baseline: str) -> int:
    """Radiometric offset of a Sentinel-2 product for its processing baseline.

    Since processing baseline 04.00 (25 January 2022) ESA adds ``BOA_ADD_OFFSET`` /
    ``RADIO_ADD_OFFSET`` = -1000 to the digital numbers so that negative reflectances survive.

    Args:
        processing_baseline: e.g. ``"04.00"``, ``"05.09"`` or ``"02.14"``.

    Returns:
        ``-1000`` for baselines ``>= 04.00``, otherwise ``0``.
    """
    major, _, minor = processing_baseline.strip().partition(".")
    return -1000 if (int(major), int(minor or 0)) >= (4, 0) else 0


def s2_dn_to_reflectance(
    dn: ArrayLike, offset: float = 0, scale: float = 10000, nodata: float | None = 0
) -> NDArray[np.float32]:
    """Convert Sentinel-2 L1C/L2A digital numbers to reflectance: ``(dn + offset) / scale``.

    Args:
        dn: Digital numbers (usually uint16).
        offset: ``0`` before processing baseline 04.00, ``-1000`` from 04.00 on
            (see :func:`s2_boa_offset`).
        scale: Quantification value, 10000 for all current baselines.
        nodata: DN marking missing pixels (0 for Sentinel-2); they become NaN so the descriptors
            skip them. ``None`` disables the check.

    Returns:
        Reflectance as float32, NaN at nodata.
    """
    arr = np.asarray(dn)
    refl = (arr.astype(np.float64) + offset) / scale
    if nodata is not None:
        refl = np.where(arr == nodata, np.nan, refl)
    return refl.astype(np.float32)


def normalized_difference(a: FloatArray, b: FloatArray) -> NDArray[np.float64]:
    """``(a - b) / (a + b)`` on reflectances clipped at 0, with 0 where both are 0.

    Clipping keeps the index inside ``[-1, 1]`` when atmospheric correction yields slightly
    negative reflectance (dark water, shadows); an undefined 0/0 is mapped to the neutral 0.

    Args:
        a: First reflectance array.
        b: Second reflectance array, same shape.

    Returns:
        Index in ``[-1, 1]`` (NaN where an input is NaN).
    """
    a64 = np.maximum(np.asarray(a, dtype=np.float64), 0.0)
    b64 = np.maximum(np.asarray(b, dtype=np.float64), 0.0)
    den = a64 + b64
    out = np.divide(a64 - b64, den, out=np.zeros_like(den), where=den > 0)
    return np.where(np.isnan(den), np.nan, out)


@dataclass(frozen=True)
class SpectralConfig:
    """Parameters of the multispectral histogram.

    Defaults describe a Sentinel-2 L2A stack in :data:`S2_L2A_BANDS` order. The index positions
    ``green=2`` (B03), ``red=3`` (B04), ``nir=7`` (B08) are also right for the 13-band L1C / EuroSAT
    order (B01..B12 then B8A), so the defaults work for both.

    Attributes:
        n_bands: Number of reflectance bands in a patch.
        bins: Bins per band.
        max_reflectance: Upper edge of the fixed reflectance range ``[0, max_reflectance]``; the
            last bin also collects everything above (clouds, snow) and the first everything below
            0 (negative L2A reflectance). 0.6 covers land surfaces with ~0.04 resolution.
        index_bins: Bins of the NDVI / NDWI histograms over ``[-1, 1]``.
        green: Band index of green (B03), or ``None``.
        red: Band index of red (B04), or ``None``.
        nir: Band index of near infrared (B08), or ``None``.
        with_indices: Append NDVI and NDWI (McFeeters) histograms. On by default; requires
            ``green``, ``red`` and ``nir``.
    """

    n_bands: int = 12
    bins: int = 16
    max_reflectance: float = 0.6
    index_bins: int = 16
    green: int | None = 2
    red: int | None = 3
    nir: int | None = 7
    with_indices: bool = True

    def __post_init__(self) -> None:
        if self.n_bands < 1 or self.bins < 1 or self.index_bins < 1:
            raise ValueError("n_bands, bins and index_bins must be >= 1")
        if not self.max_reflectance > 0:
            raise ValueError("max_reflectance must be > 0")
        if self.with_indices:
            for label, idx in (("green", self.green), ("red", self.red), ("nir", self.nir)):
                if idx is None:
                    raise ValueError(f"with_indices=True needs the {label} band index")
                if not 0 <= idx < self.n_bands:
                    raise ValueError(f"{label} band index {idx} outside 0..{self.n_bands - 1}")

    @property
    def n_indices(self) -> int:
        """Number of appended index histograms (0 or 2)."""
        return 2 if self.with_indices else 0


class SpectralDescriptor(Descriptor):
    """Concatenated fixed-bin per-band reflectance histograms (+ NDVI, NDWI)."""

    name: ClassVar[str] = "spectral"
    sensor: ClassVar[Sensor] = "s2"
    version: ClassVar[str] = "1.0"

    def __init__(self, config: SpectralConfig | None = None) -> None:
        """Create the descriptor.

        Args:
            config: Parameters; defaults to ``SpectralConfig()`` (12 x 16 + 2 x 16 = 224 bins).
        """
        self.config = config or SpectralConfig()

    @property
    def dim(self) -> int:
        """``n_bands * bins + n_indices * index_bins``."""
        cfg = self.config
        return cfg.n_bands * cfg.bins + cfg.n_indices * cfg.index_bins

    @property
    def input_nbands(self) -> int:
        """``config.n_bands``."""
        return self.config.n_bands

    def metadata(self) -> dict[str, Any]:
        """Metadata plus the configuration."""
        return {**super().metadata(), "config": asdict(self.config)}

    def batch(self, patches: FloatArray) -> Vector:
        """Describe a stack of reflectance patches.

        Args:
            patches: ``(n, n_bands, h, w)`` reflectance (see :func:`s2_dn_to_reflectance`). A pixel
                with a non-finite value in any band is excluded from every histogram so all parts
                of the vector describe the same pixels.

        Returns:
            ``(n, dim)`` float32; each per-band (and per-index) histogram sums to 1 and the whole
            vector is divided by the number of histograms, so it sums to 1.

        Raises:
            ValueError: On a bad shape, or if a patch has no valid pixel.
        """
        cfg = self.config
        x = self._check_batch(patches)
        if x.shape[1] != cfg.n_bands:
            raise ValueError(f"{self.name}: expected {cfg.n_bands} bands, got {x.shape[1]}")
        n = x.shape[0]
        x = x.reshape(n, cfg.n_bands, -1)
        codes, icodes, valid = spectral_codes(x, cfg)
        counts = valid.sum(axis=1)
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            raise ValueError(f"{self.name}: patch(es) {empty.tolist()} contain no valid (finite) pixel")
        parts = [_per_row_histograms(codes, valid, cfg.bins)]
        if icodes is not None:
            parts.append(_per_row_histograms(icodes, valid, cfg.index_bins))
        return spectral_vectors(parts, cfg)


def spectral_codes(x: FloatArray, cfg: SpectralConfig,
                   ) -> tuple[NDArray[np.int64], NDArray[np.int64] | None, NDArray[np.bool_]]:
    """Per-pixel bin indices of every band (and of NDVI, NDWI) and the shared validity mask.

    Args:
        x: ``(n, n_bands, pixels)`` reflectance.
        cfg: Histogram parameters.

    Returns:
        ``(codes, index_codes, valid)``: ``(n, n_bands, pixels)`` band bins, ``(n, 2, pixels)``
        index bins (None without indices) and the ``(n, pixels)`` mask of pixels finite in every band.
    """
    x = np.asarray(x, dtype=np.float64)
    valid = np.all(np.isfinite(x), axis=1)  # (n, pixels)
    # Fixed edges; clip so out-of-range values land in the first / last bin.
    width = cfg.max_reflectance / cfg.bins
    with np.errstate(invalid="ignore"):
        codes = np.clip(np.floor(np.nan_to_num(x) / width), 0, cfg.bins - 1).astype(np.int64)
    icodes = None
    if cfg.with_indices:
        assert cfg.green is not None and cfg.red is not None and cfg.nir is not None
        ndvi = normalized_difference(x[:, cfg.nir], x[:, cfg.red])
        ndwi = normalized_difference(x[:, cfg.green], x[:, cfg.nir])
        idx = np.stack([ndvi, ndwi], axis=1)
        icodes = np.floor((np.nan_to_num(idx) + 1.0) / 2.0 * cfg.index_bins)
        icodes = np.clip(icodes, 0, cfg.index_bins - 1).astype(np.int64)
    return codes, icodes, valid


def spectral_vectors(parts: list[NDArray[np.float64]], cfg: SpectralConfig) -> NDArray[np.float32]:
    """The descriptor from its normalised per-band (and per-index) histograms ``(n, k * bins)``."""
    hist = np.concatenate(parts, axis=1)
    # Every histogram sums to 1, so dividing by their number makes the vector sum to 1.
    return (hist / (cfg.n_bands + cfg.n_indices)).astype(np.float32)


def _per_row_histograms(codes: NDArray[np.int64], valid: NDArray[np.bool_], bins: int) -> NDArray[np.float64]:
    """Histograms of ``codes[i, k]`` over valid pixels, each normalised to sum 1, with one bincount.

    Args:
        codes: ``(n, k, pixels)`` bin indices in ``[0, bins)``.
        valid: ``(n, pixels)`` pixel mask shared by the ``k`` channels.
        bins: Bins per histogram.

    Returns:
        ``(n, k * bins)`` with each ``bins``-long block summing to 1.
    """
    n, k, _ = codes.shape
    offsets = (np.arange(n * k, dtype=np.int64) * bins).reshape(n, k, 1)
    mask = np.broadcast_to(valid[:, None, :], codes.shape)
    counts = np.bincount((codes + offsets)[mask], minlength=n * k * bins)
    return normalise_counts(counts.reshape(n, k, bins))


def normalise_counts(counts: NDArray[np.integer[Any]]) -> NDArray[np.float64]:
    """``(n, k, bins)`` pixel counts -> ``(n, k * bins)`` histograms, each ``bins``-long block summing to 1."""
    n, k, bins = counts.shape
    hist = counts.astype(np.float64)
    hist /= hist.sum(axis=2, keepdims=True)
    return hist.reshape(n, k * bins)
