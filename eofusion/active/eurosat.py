"""EuroSAT-MS sample loader and the two descriptors compared in the active-learning benchmark.

EuroSAT-MS patches are 13-band, 64 x 64 px, uint16 Sentinel-2 L1C GeoTIFFs (2015-2017, so no
radiometric offset), in band order B01 B02 B03 B04 B05 B06 B07 B08 B09 B10 B11 B12 B8A, one
folder per class, listed in ``labels.csv`` (``path,label,...``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from eofusion.features import (
    SpectralConfig,
    SpectralDescriptor,
    WLDConfig,
    WLDDescriptor,
    fuse_vectors,
    s2_dn_to_reflectance,
)
from eofusion.features.s2multiscale import S2MultiScaleConfig, S2MultiScaleDescriptor

__all__ = [
    "EUROSAT_BANDS",
    "RGBN_BANDS",
    "EuroSatSample",
    "fused_descriptors",
    "load_eurosat_ms",
    "multiscale_descriptors",
    "nir_texture_descriptors",
    "rgbn_histograms",
    "spectral_descriptors",
]

EUROSAT_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A",
)  # fmt: skip
#: Position of B08 (10 m near infrared) in :data:`EUROSAT_BANDS`.
NIR_BAND = 7
#: Positions of the four 10 m bands B02, B03, B04, B08 in :data:`EUROSAT_BANDS`.
RGBN_BANDS: tuple[int, ...] = (1, 2, 3, 7)


@dataclass(frozen=True, eq=False)
class EuroSatSample:
    """Patches of a EuroSAT-MS folder.

    Attributes:
        patches: ``(n, 13, 64, 64)`` float32 top-of-atmosphere reflectance.
        labels: ``(n,)`` class names.
        paths: Relative paths, aligned with ``labels``.
    """

    patches: NDArray[np.float32]
    labels: NDArray[np.str_]
    paths: tuple[str, ...]

    @property
    def classes(self) -> list[str]:
        """Sorted class names."""
        return sorted({str(c) for c in self.labels})


def load_eurosat_ms(root: Path | str) -> EuroSatSample:
    """Read every patch listed in ``root/labels.csv`` (sorted by path) as reflectance.

    Args:
        root: Folder holding ``labels.csv`` and the class folders.

    Returns:
        The sample.

    Raises:
        FileNotFoundError: If ``labels.csv`` or a listed file is missing.
        ValueError: If a patch does not have 13 bands or the patches differ in size.
    """
    import rasterio  # local import: the active-learning core itself needs no GDAL

    base = Path(root)
    with open(base / "labels.csv", newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r["path"])
    patches = []
    for row in rows:
        with rasterio.open(base / row["path"]) as src:
            dn = src.read()
        if dn.shape[0] != len(EUROSAT_BANDS):
            raise ValueError(f"{row['path']}: expected {len(EUROSAT_BANDS)} bands, got {dn.shape[0]}")
        patches.append(s2_dn_to_reflectance(dn, offset=0))
    shapes = {p.shape for p in patches}
    if len(shapes) > 1:
        raise ValueError(f"patches of different shapes in {base}: {sorted(shapes)}")
    return EuroSatSample(
        patches=np.stack(patches) if patches else np.zeros((0, 13, 64, 64), dtype=np.float32),
        labels=np.asarray([r["label"] for r in rows], dtype=np.str_),
        paths=tuple(r["path"] for r in rows),
    )


def spectral_descriptors(patches: NDArray[np.float32]) -> NDArray[np.float32]:
    """The default S2 descriptor on EuroSAT: 13 fixed-bin band histograms + NDVI + NDWI (240-d).

    Args:
        patches: ``(n, 13, h, w)`` reflectance.

    Returns:
        ``(n, 240)`` float32 rows summing to 1.
    """
    return SpectralDescriptor(SpectralConfig(n_bands=len(EUROSAT_BANDS))).batch(patches)


def rgbn_histograms(patches: NDArray[np.float32], bins: int = 16) -> NDArray[np.float32]:
    """Baseline descriptor: plain fixed-bin histograms of the four 10 m bands (B02 B03 B04 B08).

    Args:
        patches: ``(n, 13, h, w)`` reflectance.
        bins: Bins per band over reflectance ``[0, 0.6]``.

    Returns:
        ``(n, 4 * bins)`` float32 rows summing to 1.
    """
    cfg = SpectralConfig(n_bands=len(RGBN_BANDS), bins=bins, with_indices=False)
    return SpectralDescriptor(cfg).batch(patches[:, list(RGBN_BANDS)])


def nir_texture_descriptors(patches: NDArray[np.float32]) -> NDArray[np.float32]:
    """Texture of the 10 m near-infrared band B08: the ratio-based WLD (64-d).

    EuroSAT has no Sentinel-1 band; the project's WLD (a ratio-of-averages Weber descriptor, gain
    invariant) run on B08 is the texture part that stands in for SAR in :func:`fused_descriptors`.

    Args:
        patches: ``(n, 13, h, w)`` reflectance.

    Returns:
        ``(n, 64)`` float32 rows summing to 1.
    """
    return WLDDescriptor(WLDConfig(band=NIR_BAND)).batch(patches)


def fused_descriptors(patches: NDArray[np.float32], texture_weight: float = 0.5) -> NDArray[np.float32]:
    """Early fusion as in :class:`eofusion.features.FusedDescriptor`: NIR texture + spectral histograms.

    Args:
        patches: ``(n, 13, h, w)`` reflectance.
        texture_weight: Mass of the texture part (the project's default fusion weight, 0.5).

    Returns:
        ``(n, 64 + 240)`` float32 rows summing to 1.
    """
    return fuse_vectors(nir_texture_descriptors(patches), spectral_descriptors(patches), texture_weight)


def multiscale_descriptors(patches: NDArray[np.float32]) -> NDArray[np.float32]:
    """The multi-scale descriptor (:class:`eofusion.features.s2multiscale.S2MultiScaleDescriptor`), 432-d.

    The twelve bands an L2A product has too (B10 left out), in the patches' order.

    Args:
        patches: ``(n, 13, h, w)`` reflectance in :data:`EUROSAT_BANDS` order.

    Returns:
        ``(n, 432)`` float32 rows summing to 1.
    """
    keep = [i for i, b in enumerate(EUROSAT_BANDS) if b != "B10"]
    config = S2MultiScaleConfig(bands=tuple(EUROSAT_BANDS[i] for i in keep))
    return S2MultiScaleDescriptor(config).batch(patches[:, keep])
