"""The Sentinel-2 patch descriptor EOFusion stores: colour and texture of the 10 m bands.

The multispectral histogram (blue, green, red, NIR + NDVI/NDWI) says what a surface reflects; it
cannot tell a motorway from a car park of the same asphalt, or a city block from a quarry. The
ratio-based WLD of the NIR band adds the spatial structure (edges, their strength and
orientation), as the SAR WLD does in the fused descriptor. Both parts sum to 1 and weigh half,
so the vector sums to 1 and suits histogram kernels (Hellinger, chi2). On the EuroSAT-MS sample
with the active-learning oracle it lifts mean balanced accuracy after 40 labels from 0.89
(colour only) to 0.90 (see bench/RESULTS.md).
"""

from __future__ import annotations

from typing import Any, ClassVar

from eofusion.features.base import Descriptor, FloatArray, Sensor, Vector
from eofusion.features.fused import fuse_vectors
from eofusion.features.spectral import SpectralConfig, SpectralDescriptor
from eofusion.features.wld import WLDConfig, WLDDescriptor


class S2TextureDescriptor(Descriptor):
    """Spectral histogram of (B02, B03, B04, B08) + NDVI/NDWI, and WLD texture of B08 (96 + 64 = 160-d).

    Input: reflectance patches ``(n, 4, h, w)`` in B02, B03, B04, B08 order, NaN at nodata.
    """

    name: ClassVar[str] = "s2texture"
    sensor: ClassVar[Sensor] = "s2"
    version: ClassVar[str] = "1.0"

    def __init__(self, texture_weight: float = 0.5) -> None:
        self.spectral = SpectralDescriptor(SpectralConfig(n_bands=4, green=1, red=2, nir=3))
        self.texture = WLDDescriptor(WLDConfig(band=3))
        self.texture_weight = texture_weight

    @property
    def dim(self) -> int:
        """Texture part then spectral part."""
        return self.texture.dim + self.spectral.dim

    @property
    def input_nbands(self) -> int:
        """The four 10 m bands."""
        return 4

    def metadata(self) -> dict[str, Any]:
        """Name, version, dimension and the parts."""
        return {"name": self.name, "version": self.version, "dim": self.dim, "texture_weight": self.texture_weight,
                "parts": ["wld(B08)", "spectral(B02,B03,B04,B08,NDVI,NDWI)"]}

    def batch(self, patches: FloatArray) -> Vector:
        """Describe reflectance patches ``(n, 4, h, w)``."""
        return fuse_vectors(self.texture.batch(patches), self.spectral.batch(patches), self.texture_weight)
