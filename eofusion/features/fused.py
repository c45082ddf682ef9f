"""Early-fusion descriptor: SAR texture (WLD on Sentinel-1) + spectra (Sentinel-2).

Each part is normalised to sum 1 and weighted (0.5 / 0.5 by default) before concatenation, so
the 64-bin WLD cannot be drowned by the 224-bin spectral histogram (or vice versa) in an L1 / L2
/ histogram-intersection search, and the fused vector still sums to 1.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from eofusion.features.base import Descriptor, FloatArray, Sensor, Vector
from eofusion.features.spectral import SpectralDescriptor
from eofusion.features.wld import WLDDescriptor


def fuse_vectors(s1: ArrayLike, s2: ArrayLike, s1_weight: float = 0.5) -> NDArray[np.float32]:
    """Combine already computed S1 and S2 descriptors.

    Args:
        s1: ``(d1,)`` or ``(n, d1)`` non-negative S1 descriptor(s).
        s2: ``(d2,)`` or ``(n, d2)`` non-negative S2 descriptor(s).
        s1_weight: Mass given to the S1 part; the S2 part gets ``1 - s1_weight``.

    Returns:
        ``(d1 + d2,)`` or ``(n, d1 + d2)`` float32 summing to 1 per row.

    Raises:
        ValueError: On mismatched leading shapes, a bad weight, or a part that sums to 0.
    """
    if not 0.0 <= s1_weight <= 1.0:
        raise ValueError(f"s1_weight must be in [0, 1], got {s1_weight}")
    a = np.asarray(s1, dtype=np.float64)
    b = np.asarray(s2, dtype=np.float64)
    if a.shape[:-1] != b.shape[:-1]:
        raise ValueError(f"S1 part {a.shape} and S2 part {b.shape} describe different numbers of patches")
    sa = a.sum(axis=-1, keepdims=True)
    sb = b.sum(axis=-1, keepdims=True)
    if np.any(sa <= 0) or np.any(sb <= 0):
        raise ValueError("each descriptor part must have a positive sum")
    fused = np.concatenate([a / sa * s1_weight, b / sb * (1.0 - s1_weight)], axis=-1)
    return fused.astype(np.float32)


class FusedDescriptor(Descriptor):
    """Weighted concatenation of :class:`WLDDescriptor` (S1) and :class:`SpectralDescriptor` (S2).

    A fused patch is the S1 bands followed by the S2 bands on the band axis, on a common grid
    (e.g. 10 m). When the two sensors come on different grids, use :meth:`batch_parts`.
    """

    name: ClassVar[str] = "fused"
    sensor: ClassVar[Sensor] = "fused"
    version: ClassVar[str] = "1.0"

    def __init__(
        self,
        wld: WLDDescriptor | None = None,
        spectral: SpectralDescriptor | None = None,
        s1_bands: int = 2,
        s1_weight: float = 0.5,
    ) -> None:
        """Create the descriptor.

        Args:
            wld: S1 part; default ``WLDDescriptor()`` (band 0 = VV, linear intensity).
            spectral: S2 part; default ``SpectralDescriptor()`` (12 L2A bands + NDVI/NDWI).
            s1_bands: Number of leading S1 bands in a stacked patch (2 for VV + VH).
            s1_weight: Mass of the S1 part (the S2 part gets the rest).

        Raises:
            ValueError: If the WLD band is not among the ``s1_bands`` or the weight is outside [0, 1].
        """
        self.wld = wld or WLDDescriptor()
        self.spectral = spectral or SpectralDescriptor()
        if self.wld.input_nbands > s1_bands:
            band = self.wld.config.band
            raise ValueError(f"WLD uses band {band} but only {s1_bands} S1 band(s) are stacked")
        if not 0.0 <= s1_weight <= 1.0:
            raise ValueError(f"s1_weight must be in [0, 1], got {s1_weight}")
        self.s1_bands = s1_bands
        self.s1_weight = s1_weight

    @property
    def dim(self) -> int:
        """``wld.dim + spectral.dim``."""
        return self.wld.dim + self.spectral.dim

    @property
    def input_nbands(self) -> int:
        """``s1_bands + spectral.input_nbands``."""
        return self.s1_bands + self.spectral.input_nbands

    def metadata(self) -> dict[str, Any]:
        """Metadata plus both parts' metadata and the weighting."""
        return {
            **super().metadata(),
            "s1_bands": self.s1_bands,
            "s1_weight": self.s1_weight,
            "parts": [self.wld.metadata(), self.spectral.metadata()],
        }

    def batch(self, patches: FloatArray) -> Vector:
        """Describe stacked S1 + S2 patches.

        Args:
            patches: ``(n, s1_bands + n_s2_bands, h, w)``.

        Returns:
            ``(n, dim)`` float32, each row summing to 1.

        Raises:
            ValueError: On a bad shape or a patch without valid pixels in either part.
        """
        arr = np.asarray(patches)
        if arr.ndim != 4 or arr.shape[1] != self.input_nbands:
            raise ValueError(
                f"{self.name}: expected (n, {self.input_nbands}, h, w) "
                f"({self.s1_bands} S1 + {self.spectral.input_nbands} S2 bands), got {arr.shape}"
            )
        return self.batch_parts(arr[:, : self.s1_bands], arr[:, self.s1_bands :])

    def batch_parts(self, s1_patches: FloatArray, s2_patches: FloatArray) -> Vector:
        """Describe S1 and S2 patches given separately (grids may differ).

        Args:
            s1_patches: ``(n, s1_bands, h1, w1)`` SAR patches.
            s2_patches: ``(n, n_s2_bands, h2, w2)`` reflectance patches of the same footprints.

        Returns:
            ``(n, dim)`` float32, each row summing to 1.
        """
        return fuse_vectors(self.wld.batch(s1_patches), self.spectral.batch(s2_patches), self.s1_weight)

    def from_parts(self, s1_patch: FloatArray, s2_patch: FloatArray) -> Vector:
        """Describe one footprint from its S1 and S2 patches.

        Args:
            s1_patch: ``(s1_bands, h1, w1)``.
            s2_patch: ``(n_s2_bands, h2, w2)``.

        Returns:
            ``(dim,)`` float32 summing to 1.
        """
        return fuse_vectors(self.wld(s1_patch), self.spectral(s2_patch), self.s1_weight)
