"""Labelled descriptor sets for training and evaluating hashing and text-to-patch models.

EuroSAT-MS is read from its usual layout: one folder per class holding 13-band uint16 L1C GeoTIFFs
(B01..B12 including B10, then B8A; 64 x 64 px). Pixel values are digital numbers of products made before
processing baseline 04.00, so reflectance is ``DN / 10000`` without offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from eofusion.features import Descriptor, SpectralConfig, SpectralDescriptor, s2_dn_to_reflectance

__all__ = ["EUROSAT_BANDS", "LabelledDescriptors", "eurosat_descriptor", "load_eurosat_ms"]

EUROSAT_BANDS = 13


@dataclass(frozen=True)
class LabelledDescriptors:
    """Descriptors with one label per item.

    Attributes:
        vectors: ``(n, d)`` float32 descriptors.
        labels: ``(n,)`` class names.
        paths: ``(n,)`` source files relative to the dataset root (stable item ids).
        descriptor: Name of the descriptor kind.
    """

    vectors: NDArray[np.float32]
    labels: NDArray[np.str_]
    paths: tuple[str, ...]
    descriptor: str

    @property
    def classes(self) -> list[str]:
        """Sorted distinct labels."""
        return sorted({str(c) for c in self.labels})


def eurosat_descriptor() -> SpectralDescriptor:
    """The spectral histogram descriptor configured for EuroSAT's 13 bands (240 bins)."""
    return SpectralDescriptor(SpectralConfig(n_bands=EUROSAT_BANDS))


def load_eurosat_ms(root: str | Path, descriptor: Descriptor | None = None) -> LabelledDescriptors:
    """Read every EuroSAT-MS patch under ``root`` (``<class>/<name>.tif``) and describe it.

    Args:
        root: Dataset folder; each sub-folder is a class.
        descriptor: Descriptor to apply to reflectance patches; defaults to :func:`eurosat_descriptor`.

    Returns:
        The descriptors, sorted by relative path (deterministic order).

    Raises:
        FileNotFoundError: If ``root`` holds no GeoTIFF in a class folder.
    """
    import rasterio  # local import: the rest of the package does not need GDAL

    base = Path(root)
    files = sorted(p for p in base.glob("*/*.tif") if p.is_file())
    if not files:
        raise FileNotFoundError(f"no <class>/*.tif patches under {base}")
    desc = descriptor or eurosat_descriptor()
    patches = []
    for path in files:
        with rasterio.open(path) as src:
            patches.append(s2_dn_to_reflectance(src.read(), offset=0))
    vectors = desc.batch(np.stack(patches))
    labels = np.array([p.parent.name for p in files])
    rel = tuple(p.relative_to(base).as_posix() for p in files)
    return LabelledDescriptors(vectors=vectors, labels=labels, paths=rel, descriptor=desc.name)
