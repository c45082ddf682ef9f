"""Co-registration onto a reference grid when the source grid is only translated.

Analysis-ready Sentinel-1 on a UTM grid often has the CRS and the pixel size of the Sentinel-2
grid, its origin a fraction of a pixel (or a few pixels) off. GDAL's area-weighted average
(``Resampling.average``) then gives every target pixel the mean of the 2 x 2 source pixels it
overlaps, weighted by the overlapping areas (bilinear weights of the sub-pixel offset), with the
weights renormalised over the valid pixels (nodata and pixels outside the source are left out;
a target pixel without any valid source pixel is nodata; NaN pixels of a source whose nodata is a
number are not left out but make the target NaN). Computing that directly from one read
of the source window avoids the warper's per-pixel transforms: the result equals GDAL's within
float32 rounding (GDAL derives the weights from transformed pixel corners, which can differ
from ours by an ulp of a double). Tested against ``WarpedVRT`` in ``tests/test_coregister.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from rasterio.crs import CRS
from rasterio.enums import MaskFlags
from rasterio.io import DatasetReader
from rasterio.transform import Affine
from rasterio.windows import Window

#: Columns per chunk of the float64 arithmetic: temporaries of ~4 MB for a 480-row strip.
CHUNK_COLS = 1024


@dataclass(frozen=True)
class Translation:
    """Where the reference grid's pixel (0, 0) starts in source pixel coordinates.

    Attributes:
        row: Source row holding the top edge of target row 0 (``floor`` of the offset).
        col: Source column holding the left edge of target column 0.
        frac_row: Fraction of that source row above the target pixel's top edge, in ``[0, 1)``.
        frac_col: Fraction of that source column left of the target pixel's left edge.
    """

    row: int
    col: int
    frac_row: float
    frac_col: float


def translation(src: DatasetReader, crs: CRS, transform: Affine, nodata: float | None) -> Translation | None:
    """The translation from the reference grid to the source grid, if that is all that separates them.

    Args:
        src: The open source raster (band 1 is resampled).
        crs: CRS of the reference grid.
        transform: Geotransform of the reference grid.
        nodata: The source nodata value to honour (NaN allowed); None means no nodata.

    Returns:
        The translation, or None when the fast path does not apply: another CRS, another pixel
        size, a rotated grid, no nodata value (GDAL would then average NaN in), or a band mask
        other than the nodata value (an alpha band or a mask file).
    """
    s, g = src.transform, transform
    if nodata is None or src.crs is None or src.crs != crs:
        return None
    if s.b != 0 or s.d != 0 or g.b != 0 or g.d != 0 or s.a != g.a or s.e != g.e:
        return None
    if set(src.mask_flag_enums[0]) - {MaskFlags.nodata, MaskFlags.all_valid}:
        return None
    ox, oy = (g.c - s.c) / s.a, (g.f - s.f) / s.e
    col, row = math.floor(ox), math.floor(oy)
    return Translation(row, col, oy - row, ox - col)


def average_translated(src: DatasetReader, shift: Translation, win: Window,
                       nodata: float) -> NDArray[np.float32]:
    """GDAL's area-weighted average of band 1 onto a window of the reference grid, for a translation.

    Args:
        src: The open source raster.
        shift: From :func:`translation`.
        win: Window of the reference grid (integer offsets and size).
        nodata: Source nodata value (NaN allowed). With a numeric nodata, NaN source pixels are
            averaged in as GDAL does (the target pixel becomes NaN).

    Returns:
        ``(win.height, win.width)`` float32, NaN where no valid source pixel overlaps.
    """
    h, w = int(win.height), int(win.width)
    # Source pixels under the window: one more row and column than the window (the 2 x 2 overlap).
    r0, c0 = shift.row + int(win.row_off), shift.col + int(win.col_off)
    ra, rb = max(r0, 0), min(r0 + h + 1, src.height)
    ca, cb = max(c0, 0), min(c0 + w + 1, src.width)
    values = np.zeros((h + 1, w + 1), dtype=np.float64)
    valid = np.zeros((h + 1, w + 1), dtype=bool)  # False outside the source: left out like nodata
    if ra < rb and ca < cb:
        part = src.read(1, window=Window(ca, ra, cb - ca, rb - ra))
        # With a NaN nodata, NaN pixels are left out; with a numeric one GDAL averages NaN in (the
        # target pixel becomes NaN, i.e. nodata after the intensity conversion), and so do we.
        ok = ~np.isnan(part) if math.isnan(nodata) else part != nodata
        inner = np.s_[ra - r0 : rb - r0, ca - c0 : cb - c0]
        values[inner] = np.where(ok, part, 0)
        valid[inner] = ok
    wy, wx = (1.0 - shift.frac_row, shift.frac_row), (1.0 - shift.frac_col, shift.frac_col)
    # GDAL's order: rows outer, columns inner, weight = weight_x * weight_y, sums in double.
    weights = [(dy, dx, wx[dx] * wy[dy]) for dy in (0, 1) for dx in (0, 1)]
    total = ((weights[0][2] + weights[1][2]) + weights[2][2]) + weights[3][2]
    # GDAL does not visit a source pixel the target does not overlap (weight 0; NaN * 0 is NaN).
    weights = [wt for wt in weights if wt[2] > 0]
    out = np.empty((h, w), dtype=np.float32)
    for a in range(0, w, CHUNK_COLS):
        b = min(a + CHUNK_COLS, w)
        num = np.zeros((h, b - a))
        den = np.zeros((h, b - a))
        all_valid = bool(valid[:, a : b + 1].all())
        for dy, dx, wt in weights:
            num += values[dy : dy + h, a + dx : b + dx] * wt  # invalid pixels hold 0: adds 0
            if not all_valid:
                den += valid[dy : dy + h, a + dx : b + dx] * wt
        if all_valid:
            out[:, a:b] = num / total
        else:
            out[:, a:b] = np.divide(num, den, out=np.full_like(num, np.nan), where=den > 0)
    return out
