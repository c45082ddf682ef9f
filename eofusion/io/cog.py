"""Cloud-Optimized GeoTIFFs, written atomically so a killed run never leaves half a file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio.crs import CRS
from rasterio.transform import Affine


def write_cog(
    path: Path,
    data: NDArray[np.generic],
    crs: CRS,
    transform: Affine,
    nodata: float | None = 0,
    band_names: Sequence[str] = (),
) -> Path:
    """Write ``data`` (bands, height, width) as a COG with overviews.

    The file is written beside its target and renamed into place, so readers see either the
    old file or the complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    profile = {
        "driver": "COG", "count": int(data.shape[0]), "height": int(data.shape[1]), "width": int(data.shape[2]),
        "dtype": data.dtype.name, "crs": crs, "transform": transform, "nodata": nodata,
        "compress": "DEFLATE", "predictor": 2, "blocksize": 512, "overview_resampling": "average",
        "BIGTIFF": "IF_SAFER", "NUM_THREADS": "ALL_CPUS",
    }
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
            for i, name in enumerate(band_names, start=1):
                dst.set_band_description(i, name)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
