"""Descriptors of every grid cell of a strip, each pixel described once instead of once per level.

The result equals describing every cell's window on its own with the descriptors' ``batch``:

* Spectral histograms count pixels over fixed bins under a per-pixel mask, so the counts of a
  coarse cell are the sums of the counts of the base cells it covers (base = the greatest common
  divisor of the levels). Integer sums: exact.
* A WLD code depends on windows truncated at the border of the cell being described. A pixel at
  least ``pad = max(ring_radius, roa_radius)`` pixels from every border of its cell sees only its
  own cell, so its code is that of one pass over the whole strip (bit for bit: the same terms are
  added in the same order). Only the rim of each cell, ``pad`` pixels wide, is recomputed per
  level, from slabs ``2 * pad`` wide cut at the cell borders: about 20% of the pixels at 120 px,
  10% at 240 px, 5% at 480 px, instead of 100% per level. The slabs of a level are described as
  one image, side by side with ``pad`` nodata columns between them (a window cut at a border and
  a window that meets nodata add the same terms).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from eofusion.features.base import FloatArray
from eofusion.features.spectral import SpectralConfig, normalise_counts, spectral_codes, spectral_vectors
from eofusion.features.wld import WLDConfig, WLDDescriptor, to_intensity, wld_codes

#: Columns per chunk of the strip-wide passes: keeps every temporary around 1-2 MB (cache-sized,
#: and below malloc's mmap threshold, so freed buffers are reused instead of faulted in again).
CHUNK_COLS = 256

_T = TypeVar("_T", bound=np.generic)


@dataclass(frozen=True)
class CellSelection:
    """The cells of one level to describe, as row and column indices inside the strip."""

    level: int
    rows: NDArray[np.intp]
    cols: NDArray[np.intp]

    @property
    def size(self) -> int:
        """Number of cells."""
        return int(self.rows.size)


def _blocks(arr: NDArray[_T], level: int, sel: CellSelection) -> NDArray[_T]:
    """The ``(n, level, level)`` windows of the selected cells of a 2-D strip array (one gather)."""
    h, w = arr.shape
    nr, nc = h // level, w // level
    view = arr[: nr * level, : nc * level].reshape(nr, level, nc, level).transpose(0, 2, 1, 3)
    return view[sel.rows, sel.cols]


def spectral_by_level(refl: FloatArray, cfg: SpectralConfig, selections: Sequence[CellSelection],
                      name: str = "spectral") -> dict[int, NDArray[np.float32]]:
    """Spectral histograms of the selected cells of every level, from one pass over the strip.

    Args:
        refl: ``(n_bands, h, w)`` reflectance of the strip, NaN at nodata.
        cfg: Histogram parameters.
        selections: Cells per level (levels must be multiples of their greatest common divisor,
            which always holds).
        name: Descriptor name for error messages.

    Returns:
        level -> ``(n, dim)`` float32, equal to ``SpectralDescriptor(cfg).batch`` of the windows.

    Raises:
        ValueError: If a selected cell has no valid pixel.
    """
    todo = [s for s in selections if s.size]
    if not todo:
        return {}
    base = math.gcd(*(s.level for s in todo))
    nb, h, w = refl.shape
    nrb = max(s.level * (h // s.level) for s in todo) // base
    ncb = w // base
    k_idx = cfg.n_indices
    counts = np.zeros((nrb, ncb, nb, cfg.bins), dtype=np.int64)
    icounts = np.zeros((nrb, ncb, k_idx, cfg.index_bins), dtype=np.int64)
    step = max(1, CHUNK_COLS // base) * base
    for c0 in range(0, ncb * base, step):
        c1 = min(c0 + step, ncb * base)
        ncc = (c1 - c0) // base
        x = refl[:, : nrb * base, c0:c1]
        codes, icodes, valid = spectral_codes(x.reshape(1, nb, -1), cfg)
        cell = ((np.arange(nrb * base) // base)[:, None] * ncc + (np.arange(c1 - c0) // base)[None, :]).ravel()
        ok = valid[0]
        cells_ok = cell[ok]
        n_cells = nrb * ncc
        part = [(codes[0], nb, cfg.bins, counts)]
        if icodes is not None:
            part.append((icodes[0], k_idx, cfg.index_bins, icounts))
        for cds, k, bins, out in part:
            flat = (cells_ok[None, :] * k + np.arange(k)[:, None]) * bins + cds[:, ok]
            got = np.bincount(flat.ravel(), minlength=n_cells * k * bins).reshape(nrb, ncc, k, bins)
            out[:, c0 // base : c0 // base + ncc] = got
    result: dict[int, NDArray[np.float32]] = {}
    for sel in todo:
        f = sel.level // base
        nr, nc = (h // sel.level), (w // sel.level)
        parts = []
        for arr in (counts, icounts) if k_idx else (counts,):
            k, bins = arr.shape[2:]
            summed = arr[: nr * f, : nc * f].reshape(nr, f, nc, f, k, bins).sum(axis=(1, 3))
            parts.append(summed[sel.rows, sel.cols])
        empty = np.flatnonzero(parts[0][:, 0, :].sum(axis=1) == 0)
        if empty.size:
            raise ValueError(f"{name}: patch(es) {empty.tolist()} contain no valid (finite) pixel")
        result[sel.level] = spectral_vectors([normalise_counts(p) for p in parts], cfg)
    return result


def wld_by_level(values: FloatArray, cfg: WLDConfig, selections: Sequence[CellSelection],
                 name: str = "wld") -> dict[int, NDArray[np.float32]]:
    """WLD histograms of the selected cells of every level: one strip-wide pass plus the cell rims.

    The strip-wide codes are counted once per base cell; a cell's histogram is the sum of its
    base cells' counts, minus the strip-wide codes of its rim, plus the rim's codes computed with
    the windows cut at the cell border.

    Args:
        values: ``(h, w)`` SAR values of the strip in ``cfg.scale`` (the band to describe).
        cfg: Descriptor parameters.
        selections: Cells per level.
        name: Descriptor name for error messages.

    Returns:
        level -> ``(n, dim)`` float32, equal to ``WLDDescriptor(cfg).batch`` of the windows.

    Raises:
        ValueError: If a selected cell has no valid pixel, or no pixel with complete windows.
    """
    todo = [s for s in selections if s.size]
    if not todo:
        return {}
    pad = max(cfg.ring_radius, cfg.roa_radius)
    dim = cfg.excitation_bins * cfg.orientation_bins
    h, w = values.shape
    base = math.gcd(*(s.level for s in todo))
    nrb = max(s.level * (h // s.level) for s in todo) // base
    ncb = w // base
    step = max(1, CHUNK_COLS // base) * base
    counts = np.zeros((nrb, ncb, dim), dtype=np.int64)  # strip-wide codes per base cell
    n_valid = np.zeros((nrb, ncb), dtype=np.int64)
    codes = np.zeros((h, w), dtype=np.int16)
    use = np.zeros((h, w), dtype=bool)
    wide = any(s.level >= 2 * pad for s in todo)
    for c0 in range(0, w, step):
        c1 = min(c0 + step, w)
        a, b = max(c0 - pad, 0), min(c1 + pad, w)
        sub = values[:, a:b]
        x = to_intensity(sub, cfg.scale)
        ok = np.isfinite(x) & (x > 0)
        nc = min(c1, ncb * base) // base - c0 // base
        if nc > 0:
            n_valid[:, c0 // base : c0 // base + nc] = (
                ok[: nrb * base, c0 - a : c0 - a + nc * base].reshape(nrb, base, nc, base).sum(axis=(1, 3)))
        if not wide or not ok.any():
            continue  # all nodata: nothing counts here
        cc, uu = wld_codes(sub[None], cfg, name)
        codes[:, c0:c1] = cc[0, :, c0 - a : c1 - a]
        use[:, c0:c1] = uu[0, :, c0 - a : c1 - a]
        if nc > 0:
            counts[:, c0 // base : c0 // base + nc] = _counts(
                codes[None, : nrb * base, c0 : c0 + nc * base], use[None, : nrb * base, c0 : c0 + nc * base], dim,
                cell=(base, base))[0]
    result: dict[int, NDArray[np.float32]] = {}
    for sel in todo:
        level, n = sel.level, sel.size
        nr, nc = h // level, w // level
        f = level // base
        empty = np.flatnonzero(_block_sums(n_valid, f, nr, nc)[sel.rows, sel.cols] == 0)
        if empty.size:
            raise ValueError(f"{name}: patch(es) {empty.tolist()} contain no valid (finite, > 0) pixel")
        if level < 2 * pad:
            # Cells too small for a rim: describe them window by window.
            cells = _blocks(np.asarray(values), level, sel)
            result[level] = WLDDescriptor(cfg).batch(cells[:, None])
            continue
        hist = _block_sums(counts, f, nr, nc)[sel.rows, sel.cols]
        mid, inner, outer = slice(pad, level - pad), slice(None, 2 * pad), slice(level - 2 * pad, None)
        rims = (  # (rows of the slab, columns of the slab, rows and columns kept inside the slab)
            (inner, slice(None), np.s_[:, :pad, :]),  # top: the first pad rows
            (outer, slice(None), np.s_[:, pad:, :]),  # bottom: the last pad rows
            (slice(None), inner, np.s_[:, mid, :pad]),  # left, without the corners
            (slice(None), outer, np.s_[:, mid, pad:]),  # right, without the corners
        )
        for rsl, csl, keep in rims:
            # Take the strip-wide codes of the rim out, put the codes of windows cut at the cell border in.
            rim_codes, rim_use = _sub_blocks(codes, level, sel, rsl, csl), _sub_blocks(use, level, sel, rsl, csl)
            hist -= _counts(rim_codes[keep], rim_use[keep], dim)
            slab = _sub_blocks(np.asarray(values), level, sel, rsl, csl)
            xs = to_intensity(slab, cfg.scale)
            has = np.flatnonzero((np.isfinite(xs) & (xs > 0)).any(axis=(1, 2)))
            if has.size == 0:
                continue
            sc, su = _codes_side_by_side(slab[has], cfg, name)
            hist[has] += _counts(sc[keep], su[keep], dim)
        totals = hist.sum(axis=1)
        bad = np.flatnonzero(totals == 0)
        if bad.size:
            raise ValueError(f"{name}: patch(es) {bad.tolist()} have no valid pixel with complete neighbourhood "
                             "windows")
        result[level] = (hist.astype(np.float64) / totals[:, None].astype(np.float64)).astype(np.float32)
        assert result[level].shape == (n, dim)
    return result


def _codes_side_by_side(slabs: FloatArray, cfg: WLDConfig, name: str) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """:func:`wld_codes` of a stack of small images, computed as one image: side by side, ``pad`` NaN columns apart.

    Windows cut at an image border and windows that meet nodata add the same terms (the pixels
    left out count as +0.0 and as no pixel), so a pixel's code does not change when its image
    is placed in a larger one surrounded by ``pad`` columns of nodata. One wide image instead of
    hundreds of 6 px wide rims keeps the kernel's per-row work on long rows.
    """
    pad = max(cfg.ring_radius, cfg.roa_radius)
    n, h, w = slabs.shape
    mosaic = np.full((h, n, w + pad), np.nan, dtype=np.result_type(slabs.dtype, np.float32))
    mosaic[:, :, :w] = slabs.transpose(1, 0, 2)
    codes, use = wld_codes(mosaic.reshape(1, h, n * (w + pad)), cfg, name)
    return (codes.reshape(h, n, w + pad)[:, :, :w].transpose(1, 0, 2),
            use.reshape(h, n, w + pad)[:, :, :w].transpose(1, 0, 2))


def _block_sums(per_base: NDArray[np.int64], f: int, nr: int, nc: int) -> NDArray[np.int64]:
    """Sums of ``f x f`` blocks of per-base-cell arrays ``(rows, cols, ...)`` -> ``(nr, nc, ...)``."""
    rest = per_base.shape[2:]
    return per_base[: nr * f, : nc * f].reshape(nr, f, nc, f, *rest).sum(axis=(1, 3))


def _sub_blocks(arr: NDArray[_T], level: int, sel: CellSelection, rows: slice, cols: slice) -> NDArray[_T]:
    """The same part (``rows``, ``cols`` inside a cell) of every selected cell: ``(n, ...)`` (one gather)."""
    h, w = arr.shape
    nr, nc = h // level, w // level
    view = arr[: nr * level, : nc * level].reshape(nr, level, nc, level)[:, rows][:, :, :, cols]
    return view.transpose(0, 2, 1, 3)[sel.rows, sel.cols]


def _counts(codes: NDArray[np.integer[Any]], use: NDArray[np.bool_], dim: int,
            cell: tuple[int, int] | None = None) -> NDArray[np.int64]:
    """Counts of ``codes`` where ``use``, per image ``(n, dim)``, or per cell ``(n, rows, cols, dim)``.

    Args:
        codes: ``(n, h, w)`` bin indices in ``[0, dim)``.
        use: ``(n, h, w)`` mask of the pixels to count.
        dim: Number of bins.
        cell: ``(height, width)`` of cells tiling each image exactly, or None for whole images.
    """
    n, h, w = codes.shape
    try:
        from eofusion.features.wld_kernel import count_codes
    except ImportError:  # no numba: the bincount below gives the same counts
        pass
    else:
        ch, cw = cell if cell is not None else (h, w)
        out = np.zeros((n, h // ch, w // cw, dim), dtype=np.int64)
        count_codes(codes, use, ch, cw, out)
        return out if cell is not None else out.reshape(n, dim)
    if cell is None:
        groups = np.arange(n, dtype=np.int64)[:, None, None]
        shape: tuple[int, ...] = (n, dim)
    else:
        ch, cw = cell
        rows, cols = h // ch, w // cw
        groups = ((np.arange(n, dtype=np.int64)[:, None, None] * rows + (np.arange(h) // ch)[None, :, None]) * cols
                  + (np.arange(w) // cw)[None, None, :])
        shape = (n, rows, cols, dim)
    flat = (groups * dim + codes)[use]
    return np.bincount(flat, minlength=int(np.prod(shape))).reshape(shape)
