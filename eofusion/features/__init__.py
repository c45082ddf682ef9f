"""Patch descriptors for early fusion of Sentinel-1 and Sentinel-2 (pure numpy).

``descriptors`` is the default registry: ``descriptors.get("wld" | "spectral" | "fused")``.
"""

from eofusion.features.base import (
    Descriptor,
    DescriptorRegistry,
    FloatArray,
    Sensor,
    UnknownDescriptorError,
    Vector,
)
from eofusion.features.fused import FusedDescriptor, fuse_vectors
from eofusion.features.s2texture import S2TextureDescriptor
from eofusion.features.spectral import (
    S2_L2A_BANDS,
    SpectralConfig,
    SpectralDescriptor,
    normalized_difference,
    s2_boa_offset,
    s2_dn_to_reflectance,
)
from eofusion.features.wld import SarScale, WLDConfig, WLDDescriptor, db_to_linear, to_intensity

descriptors = DescriptorRegistry()
descriptors.register(WLDDescriptor())
descriptors.register(SpectralDescriptor())
descriptors.register(FusedDescriptor())
descriptors.register(S2TextureDescriptor())

__all__ = [
    "S2_L2A_BANDS",
    "Descriptor",
    "DescriptorRegistry",
    "S2TextureDescriptor",
    "FloatArray",
    "FusedDescriptor",
    "SarScale",
    "Sensor",
    "SpectralConfig",
    "SpectralDescriptor",
    "UnknownDescriptorError",
    "Vector",
    "WLDConfig",
    "WLDDescriptor",
    "db_to_linear",
    "descriptors",
    "fuse_vectors",
    "normalized_difference",
    "s2_boa_offset",
    "s2_dn_to_reflectance",
    "to_intensity",
]
