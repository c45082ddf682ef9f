"""A richer Sentinel-2 patch descriptor: every band, more indices, and texture at three scales.

Measured in the EuroSAT-MS oracle (``bench/active_learning_heldout.py``), not yet the stored ``s2`` kind
(see ARCHITECTURE.md, "Descriptor versions"). Three parts, each normalised to sum 1 and weighted:

* **Texture of the NIR band** (weight 0.25): the ratio-based WLD of B08 (:mod:`eofusion.features.wld`), 64 bins.
* **Spectra** (0.25): a histogram of every band an L2A product has (the 20 m and 60 m bands too, resampled
  to the patch grid), over the square root of reflectance (16 bins on ``sqrt([0, 0.6])``: finer where
  water, shadow and vegetation in the visible lie, coarser at bright values), and of five normalised
  differences: NDVI (B08, B04), NDWI (B03, B08), NDBI (B11, B08), the red-edge NDRE (B8A, B05) and the
  SWIR ratio (B11, B12); 16 bins on ``[-1, 1]`` each.
* **Local contrast at three scales** (0.5): the standard deviation of log reflectance in every 3 x 3
  window of B08 and B04, at 10 m, and again after 2 x 2 and 4 x 4 block means (20 m, 40 m):
  a histogram (16 bins on ``sqrt`` of ``[0, 1]``) per band and scale. WLD sees edges at one scale; fields,
  roads, orchards and roofs differ in how contrast changes with scale.

The vector sums to 1 (histogram kernels: Hellinger, chi2). Non-finite pixels (nodata) are left out of
every histogram; a window holding one is left out of the contrast histograms.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from eofusion.features.base import Descriptor, FloatArray, Sensor, Vector
from eofusion.features.spectral import S2_L2A_BANDS, normalized_difference
from eofusion.features.wld import WLDConfig, WLDDescriptor

__all__ = ["L1C_BANDS", "S2MultiScaleConfig", "S2MultiScaleDescriptor", "local_contrast"]

#: Sentinel-2 L1C band order of EuroSAT-MS (B10 included, B8A last).
L1C_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A",
)  # fmt: skip


@dataclass(frozen=True)
class S2MultiScaleConfig:
    """Parameters of :class:`S2MultiScaleDescriptor`.

    Attributes:
        bands: Band names in the order of the patch's band axis (every band gets a histogram). Default: the
            twelve bands of an L2A product (:data:`S2_L2A_BANDS`), which an L1C product has too (its B10, the
            cirrus band, is left out: L2A has none, and on EuroSAT it changed nothing measurable).
        indices: Normalised differences ``(a, b)`` -> ``(a - b) / (a + b)``, by band name.
        texture_bands: Bands whose local contrast is histogrammed at every scale.
        wld_band: Band of the WLD texture part.
        scales: Block-mean factors of the contrast part (1 = the patch grid).
        bins: Bins of every histogram.
        max_reflectance: Upper edge of the band histograms (before the square root).
        weights: Mass of the WLD, spectral and contrast parts.
    """

    bands: tuple[str, ...] = S2_L2A_BANDS
    indices: tuple[tuple[str, str], ...] = (("B08", "B04"), ("B03", "B08"), ("B11", "B08"), ("B8A", "B05"),
                                            ("B11", "B12"))
    texture_bands: tuple[str, ...] = ("B08", "B04")
    wld_band: str = "B08"
    scales: tuple[int, ...] = (1, 2, 4)
    bins: int = 16
    max_reflectance: float = 0.6
    weights: tuple[float, float, float] = field(default=(0.25, 0.25, 0.5))

    def __post_init__(self) -> None:
        names = set(self.bands)
        needed = {self.wld_band, *self.texture_bands, *(b for pair in self.indices for b in pair)}
        if needed - names:
            raise ValueError(f"bands {sorted(needed - names)} are not in the patch's bands {self.bands}")
        if self.bins < 1 or not self.max_reflectance > 0 or not self.scales or min(self.scales) < 1:
            raise ValueError("bins >= 1, max_reflectance > 0 and scales >= 1 are needed")
        if len(self.weights) != 3 or min(self.weights) < 0 or not sum(self.weights) > 0:
            raise ValueError(f"weights must be three non-negative numbers with a positive sum, got {self.weights}")


def _histograms(values: NDArray[np.float64], valid: NDArray[np.bool_], lo: float, hi: float,
                bins: int) -> NDArray[np.float64]:
    """``(n, bins)`` histograms of ``values[i][valid[i]]`` on fixed edges, each summing to 1 (clipped ends)."""
    n = values.shape[0]
    v = values.reshape(n, -1)
    ok = valid.reshape(n, -1)
    codes = np.clip(np.floor((np.nan_to_num(v) - lo) / (hi - lo) * bins), 0, bins - 1).astype(np.int64)
    codes += (np.arange(n, dtype=np.int64) * bins)[:, None]
    counts = np.bincount(codes[ok], minlength=n * bins).reshape(n, bins).astype(np.float64)
    total = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, total, out=np.full_like(counts, 1.0 / bins), where=total > 0)


def _block_mean(x: NDArray[np.float64], f: int) -> NDArray[np.float64]:
    """``(n, h // f, w // f)`` means of ``f x f`` blocks (NaN if the block holds one)."""
    if f == 1:
        return x
    n, h, w = x.shape
    h2, w2 = h // f, w // f
    return x[:, : h2 * f, : w2 * f].reshape(n, h2, f, w2, f).mean(axis=(2, 4))


def local_contrast(reflectance: NDArray[np.float64]) -> NDArray[np.float64]:
    """Standard deviation of ``log(max(r, 1e-3))`` in every complete 3 x 3 window.

    Args:
        reflectance: ``(n, h, w)``; NaN marks nodata.

    Returns:
        ``(n, h - 2, w - 2)``; NaN where a window holds a NaN.
    """
    x = np.log(np.maximum(reflectance, 1e-3))
    n, h, w = x.shape
    s = np.zeros((n, h - 2, w - 2))
    s2 = np.zeros_like(s)
    for dy in range(3):
        for dx in range(3):
            v = x[:, dy:dy + h - 2, dx:dx + w - 2]
            s += v
            s2 += v * v
    mean = s / 9.0
    return np.sqrt(np.maximum(s2 / 9.0 - mean * mean, 0.0))


class S2MultiScaleDescriptor(Descriptor):
    """WLD of B08 + histograms of every band and five indices + local contrast at three scales."""

    name: ClassVar[str] = "s2multiscale"
    sensor: ClassVar[Sensor] = "s2"
    version: ClassVar[str] = "1.0"

    def __init__(self, config: S2MultiScaleConfig | None = None) -> None:
        self.config = config or S2MultiScaleConfig()
        self._index = {b: i for i, b in enumerate(self.config.bands)}
        self.wld = WLDDescriptor(WLDConfig(band=self._index[self.config.wld_band]))

    @property
    def dim(self) -> int:
        """``64 + bins * (bands + indices + texture_bands * scales)``."""
        cfg = self.config
        return self.wld.dim + cfg.bins * (len(cfg.bands) + len(cfg.indices) + len(cfg.texture_bands) * len(cfg.scales))

    @property
    def input_nbands(self) -> int:
        """Every configured band."""
        return len(self.config.bands)

    def metadata(self) -> dict[str, Any]:
        """Metadata plus the configuration."""
        return {**super().metadata(), "config": asdict(self.config)}

    def batch(self, patches: FloatArray) -> Vector:
        """Describe reflectance patches ``(n, len(bands), h, w)`` (NaN at nodata; ``h, w >= 3 * max(scales)``).

        Raises:
            ValueError: On a bad shape, or a patch without a valid pixel.
        """
        cfg = self.config
        x = self._check_batch(patches)
        if x.shape[1] != len(cfg.bands):
            raise ValueError(f"{self.name}: expected {len(cfg.bands)} bands {cfg.bands}, got {x.shape[1]}")
        if min(x.shape[2:]) < 3 * max(cfg.scales):
            raise ValueError(f"{self.name}: patches of {x.shape[2:]} px are too small for scale {max(cfg.scales)}")
        valid = np.all(np.isfinite(x), axis=1)
        if not valid.reshape(x.shape[0], -1).any(axis=1).all():
            raise ValueError(f"{self.name}: a patch contains no valid (finite) pixel")
        bins = cfg.bins
        top = float(np.sqrt(cfg.max_reflectance))
        spectral = [_histograms(np.sqrt(np.maximum(x[:, b], 0.0)), valid, 0.0, top, bins) for b in range(x.shape[1])]
        spectral += [_histograms(normalized_difference(x[:, self._index[a]], x[:, self._index[b]]), valid, -1.0, 1.0,
                                 bins) for a, b in cfg.indices]
        contrast = []
        for band in cfg.texture_bands:
            img = np.where(valid, x[:, self._index[band]], np.nan)
            for f in cfg.scales:
                c = local_contrast(_block_mean(img, f))
                contrast.append(_histograms(np.sqrt(np.nan_to_num(c)), np.isfinite(c), 0.0, 1.0, bins))
        groups = [[self.wld.batch(x).astype(np.float64)], spectral, contrast]
        out = [np.concatenate(g, axis=1) / len(g) * w for g, w in zip(groups, cfg.weights, strict=True)]
        vec = np.concatenate(out, axis=1)
        return (vec / vec.sum(axis=1, keepdims=True)).astype(np.float32)
