"""Compiled (numba) kernel of the SAR Weber Local Descriptor codes, equal to the numpy reference.

One pass per image, row by row over cache-sized buffers, replaces the ~30 image-sized numpy
passes of :func:`~eofusion.features.wld.wld_codes_reference` and returns the same
``(codes, use)`` bit for bit:

* Window sums add the same terms in the same order as the reference (column sums first, offsets
  ascending, then row sums of those, offsets ascending). The reference's zero padding only adds
  ``+0.0`` to non-negative sums, which changes nothing, so out-of-image terms are skipped.
* Valid-pixel counts are exact integers whatever the order (summed-area table here).
* Means and ratios use the same IEEE operations in the same order (no fast-math: no FMA
  contraction, no reassociation), so ``use`` is exact for every pixel.
* The bins need no ``arctan``/``arctan2``: a bin is decided by comparing the ratio with the
  ``tan`` of the bin edges and the log-ratios (a polynomial, relative error < 2e-12) with the
  tangents of the sector edges. Where such errors (or an ulp of another ``log``/``arctan``:
  numpy's own SIMD routines on AVX-512 machines differ from the C library) could move a pixel
  across an edge or the tie threshold, i.e. within ``_EDGE_MARGIN`` of it, the kernel reports
  the pixel and its code is computed by the reference's numpy expressions. On the test scenes
  that is none or a few pixels per million.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numpy.typing import NDArray

from eofusion.features.base import FloatArray
from eofusion.features.wld import _TIE_TOL, WLDConfig, quantise, to_intensity, wld_codes_reference

#: Ambiguous pixels the kernel may hand back per call; more (never seen) falls back to numpy.
AMBIGUOUS_CAPACITY = 4096
#: A bin coordinate this close to an integer, or a log-ratio this close (relatively) to the tie
#: threshold, could land on the other side with another ulp-accurate libm: recomputed by numpy.
_EDGE_MARGIN = 1e-9

SCALE_INTENSITY, SCALE_AMPLITUDE = 0, 1
_SQRT2 = math.sqrt(2.0)
_LN2 = math.log(2.0)
_MIN_NORMAL = float(np.finfo(np.float64).tiny)


@numba.njit(cache=True, nogil=True)
def _col_sums(src: NDArray[np.float64], first: int, last: int, dst: NDArray[np.float64]) -> None:
    """``dst[j] = sum(src[j + dx] for dx in first..last)`` inside the row, offsets ascending.

    Offsets outer, columns inner: each element gets its terms in the reference's order, and the
    inner loop vectorises (no reordering of any one sum).
    """
    w = src.shape[0]
    for j in range(w):
        dst[j] = 0.0
    for dx in range(first, last + 1):
        a, b = max(0, -dx), min(w, w - dx)
        # Slices indexed from 0, not j + dx: no negative-index checks, so the loop vectorises
        # (numba's slice arithmetic `d += s` allocated a temporary: 6x slower).
        d, s = dst[a:b], src[a + dx : b + dx]
        for j in range(b - a):
            d[j] += s[j]


@numba.njit(cache=True, nogil=True)
def _row_sums(ring: NDArray[np.float64], h: int, i: int, first: int, last: int, out: NDArray[np.float64]) -> None:
    """``out[j] = sum(col_sums[i + dy, j] for dy in first..last)`` inside the image, offsets ascending.

    ``ring`` holds the column sums of image row ``r`` in slot ``r % len(ring)``.
    """
    n_slots, w = ring.shape
    for j in range(w):
        out[j] = 0.0
    for dy in range(first, last + 1):
        ii = i + dy
        if 0 <= ii < h:
            src = ring[ii % n_slots]
            for j in range(w):
                out[j] += src[j]


@numba.njit(cache=True, nogil=True)
def _counts(sat: NDArray[np.int32], i: int, r0: int, r1: int, c0: int, c1: int, diff: NDArray[np.int32],
            out: NDArray[np.float64]) -> None:
    """Valid pixels of the windows rows ``i+r0..i+r1`` x columns ``j+c0..j+c1`` (clipped), every ``j``.

    ``sat`` is the summed-area table of the valid mask; ``diff`` a ``w + 1`` scratch row.
    """
    h, w = sat.shape[0] - 1, sat.shape[1] - 1
    a, b = max(i + r0, 0), min(i + r1 + 1, h)
    if a >= b:
        for j in range(w):
            out[j] = 0.0
        return
    sb, sa = sat[b], sat[a]
    for j in range(w + 1):
        diff[j] = sb[j] - sa[j]  # valid pixels of rows a..b-1 left of each column
    # Columns whose window is not clipped: slices from 0 (vectorises); the others one by one.
    lo, hi = max(0, -c0), max(max(0, -c0), min(w, w - c1))
    d1, d0, o = diff[lo + c1 + 1 : hi + c1 + 1], diff[lo + c0 : hi + c0], out[lo:hi]
    for jj in range(hi - lo):
        o[jj] = np.float64(d1[jj] - d0[jj])
    for j in range(min(lo, w)):
        out[j] = np.float64(diff[min(max(j + c1 + 1, 0), w)] - diff[min(max(j + c0, 0), w)])
    for j in range(hi, w):
        out[j] = np.float64(diff[min(max(j + c1 + 1, 0), w)] - diff[min(max(j + c0, 0), w)])


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _log_approx(q: NDArray[np.float64], bits: NDArray[np.int64], expo: NDArray[np.float64],
                out: NDArray[np.float64]) -> None:
    """``out = log(q)`` within a relative 2e-12 for normal positive finite ``q`` (vectorised).

    ``q = 2**e * m`` with ``m`` in ``(sqrt(1/2), sqrt(2)]``; ``log(m) = 2 * atanh(s)``,
    ``s = (m - 1) / (m + 1)``, ``|s| < 0.172``, summed to ``s**13``: the rest is below
    ``s**14 / 15`` relative, and the relative error stays that small near ``q = 1`` too.
    Other ``q`` (0, subnormal, inf) give garbage: the caller sends those elsewhere.
    """
    qb = q.view(np.int64)
    mf = bits.view(np.float64)
    for j in range(q.shape[0]):
        v = qb[j]
        expo[j] = np.float64(((v >> 52) & 0x7FF) - 1023)
        bits[j] = (v & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000  # the mantissa as a double in [1, 2)
    for j in range(q.shape[0]):
        m, e = mf[j], expo[j]
        big = m > _SQRT2
        m = m * 0.5 if big else m
        e = e + 1.0 if big else e
        sv = (m - 1.0) / (m + 1.0)
        z = sv * sv
        p = 1.0 + z * (1.0 / 3 + z * (1.0 / 5 + z * (1.0 / 7 + z * (1.0 / 9 + z * (1.0 / 11 + z * (1.0 / 13))))))
        out[j] = e * _LN2 + 2.0 * sv * p


@numba.njit(cache=True, nogil=True)
def _near_integer(u: float) -> bool:
    return abs(u - math.floor(u + 0.5)) < _EDGE_MARGIN


@numba.njit(cache=True, nogil=True, error_model="numpy")
def wld_kernel(x, scale, rc, ro, rr, m_bins, t_bins, tol, neutral_code,  # type: ignore[no-untyped-def]
               m_edges, t_tans, codes, use, n_valid, amb_index, amb_values):
    """Fill ``codes``/``use`` for ``(n, h, w)`` values ``x``; return the number of ambiguous pixels.

    Row by row: window sums and counts, then the ratios (the reference's IEEE operations, in
    vectorised loops), then the bins from comparisons instead of ``arctan``/``arctan2``: the
    excitation bin counts the excess ratios ``tan`` of the edges lie below, the orientation bin
    counts the edge tangents below ``|gy| / |gx|`` and adds the quadrant (``T % 4 == 0``; other
    ``T`` rebuild the angle with ``atan``). The log-ratios are a polynomial (relative error
    < 2e-12). A pixel whose bin could change with errors of that size (within
    ``_EDGE_MARGIN`` of an edge or of the tie threshold) and a pixel with a subnormal ratio
    are reported: the caller computes their codes with the reference's numpy expressions.
    ``use`` is exact for every pixel.

    Args:
        x: ``(n, h, w)`` float32/float64 values, linear intensity (``scale`` 0) or amplitude (1).
        scale: :data:`SCALE_INTENSITY` or :data:`SCALE_AMPLITUDE`.
        rc, ro, rr: Centre, ring and ROA radii.
        m_bins, t_bins: Excitation and orientation bins.
        tol: The reference's tie tolerance.
        neutral_code: The reference's code of pixels that are not used.
        m_edges: ``(m_bins - 1,)`` increasing excess ratios at the inner excitation bin edges.
        t_tans: Tangents of the orientation edges inside ``(0, pi/2)`` when ``t_bins % 4 == 0``,
            else empty.
        codes: ``(n, h, w)`` int64 output.
        use: ``(n, h, w)`` bool output.
        n_valid: ``(n,)`` int64 output, valid pixels per image.
        amb_index: ``(cap,)`` int64 output, flat indices of ambiguous pixels.
        amb_values: ``(cap, 3)`` float64 output, their ratio, right/left and down/up.
    """
    n, h, w = x.shape
    cap = amb_index.shape[0]
    n_amb = 0
    n_tans = t_tans.shape[0]
    two_pi = 2.0 * math.pi
    # Rolling buffers of the last 2 * pad + 1 rows (cache-sized; image-sized arrays were 4x slower).
    pad = max(rc, ro, rr)
    n_slots = 2 * pad + 1
    xv = np.empty((n_slots, w), dtype=np.float64)
    cs = np.empty((5, n_slots, w), dtype=np.float64)
    key_first = np.array([-rc, -ro, -rr, 1, -rr])
    key_last = np.array([rc, ro, rr, rr, -1])
    sat = np.zeros((h + 1, w + 1), dtype=np.int32)
    rows = np.empty((12, w), dtype=np.float64)
    b_c, b_o, b_r, b_l, b_d, b_u = rows[0], rows[1], rows[2], rows[3], rows[4], rows[5]
    n_c, n_o, n_r, n_l, n_d, n_u = rows[6], rows[7], rows[8], rows[9], rows[10], rows[11]
    diff = np.empty(w + 1, dtype=np.int32)
    fl = np.empty((7, w), dtype=np.float64)
    ratio_r, qx_r, qy_r, gx_r, gy_r, exc_r, expo = fl[0], fl[1], fl[2], fl[3], fl[4], fl[5], fl[6]
    bits = np.empty(w, dtype=np.int64)
    st = np.empty((2, w), dtype=np.uint8)
    ok_r, amb_r = st[0], st[1]
    mi = np.empty((2, w), dtype=np.int64)
    m_r, c_r = mi[0], mi[1]
    for k in range(n):
        count = 0
        ready = 0  # image rows whose values, counts and column sums are in the buffers
        for i in range(h):
            while ready < h and ready <= i + pad:
                r, slot = ready, ready % n_slots
                xr, run = xv[slot], 0
                for j in range(w):
                    v = np.float64(x[k, r, j])
                    if scale == SCALE_AMPLITUDE:
                        v = v * v
                    if math.isfinite(v) and v > 0:
                        xr[j] = v
                        run += 1
                    else:
                        xr[j] = 0.0
                    sat[r + 1, j + 1] = sat[r, j + 1] + run
                count += run
                for q in range(5):
                    _col_sums(xr, key_first[q], key_last[q], cs[q, slot])
                ready += 1
            _row_sums(cs[0], h, i, -rc, rc, b_c)
            _row_sums(cs[1], h, i, -ro, ro, b_o)
            _row_sums(cs[3], h, i, -rr, rr, b_r)
            _row_sums(cs[4], h, i, -rr, rr, b_l)
            _row_sums(cs[2], h, i, 1, rr, b_d)
            _row_sums(cs[2], h, i, -rr, -1, b_u)
            _counts(sat, i, -rc, rc, -rc, rc, diff, n_c)
            _counts(sat, i, -ro, ro, -ro, ro, diff, n_o)
            _counts(sat, i, -rr, rr, 1, rr, diff, n_r)
            _counts(sat, i, -rr, rr, -rr, -1, diff, n_l)
            _counts(sat, i, 1, rr, -rr, rr, diff, n_d)
            _counts(sat, i, -rr, -1, -rr, rr, diff, n_u)
            xi_row = xv[i % n_slots]
            # Short loops with one output each: LLVM vectorises a loop only when it can check at
            # run time that its arrays do not overlap, for a handful of arrays at most.
            # Ratios: the reference's operations in the same order. A zero count gives NaN (0/0) or
            # inf, which the checks below reject, as the reference's masks do.
            for j in range(w):
                qx_r[j] = (b_r[j] / n_r[j]) / (b_l[j] / n_l[j])
            for j in range(w):
                qy_r[j] = (b_d[j] / n_d[j]) / (b_u[j] / n_u[j])
            for j in range(w):
                ratio_r[j] = ((b_o[j] - b_c[j]) / (n_o[j] - n_c[j])) / (b_c[j] / n_c[j])
            # Used: a valid pixel, a positive finite ratio (NaN without ring pixels), positive
            # finite ROA means (q > 0 and finite implies both means are) and log(q) finite. q
            # between 0 and the smallest normal double goes to the C library's log below.
            for j in range(w):
                ok_r[j] = ((xi_row[j] > 0.0) & (ratio_r[j] > 0.0) & (ratio_r[j] < np.inf)
                           & (qx_r[j] >= _MIN_NORMAL) & (qx_r[j] < np.inf))
            for j in range(w):
                ok_r[j] &= (qy_r[j] >= _MIN_NORMAL) & (qy_r[j] < np.inf)
            for j in range(w):
                d = ratio_r[j] - 1.0
                exc_r[j] = d if abs(d) >= tol else 0.0
            _log_approx(qx_r, bits, expo, gx_r)
            _log_approx(qy_r, bits, expo, gy_r)
            # Excitation bins: edges below the excess; next to an edge the pixel is reported.
            for j in range(w):
                m_r[j] = 0
            for j in range(w):
                amb_r[j] = 0
            for e in m_edges:
                for j in range(w):
                    m_r[j] += 1 if exc_r[j] > e else 0
                margin = _EDGE_MARGIN * (1.0 + e * e)
                for j in range(w):
                    amb_r[j] |= abs(exc_r[j] - e) <= margin
            # Log-ratios below the tie threshold are 0; next to it the pixel is reported.
            for j in range(w):
                amb_r[j] |= ((abs(abs(gx_r[j]) - tol) <= tol * _EDGE_MARGIN)
                             | (abs(abs(gy_r[j]) - tol) <= tol * _EDGE_MARGIN))
            for j in range(w):
                gx_r[j] = gx_r[j] if abs(gx_r[j]) >= tol else 0.0
            for j in range(w):
                gy_r[j] = gy_r[j] if abs(gy_r[j]) >= tol else 0.0
            row_codes, row_use = codes[k, i], use[k, i]
            for j in range(w):
                row_use[j] = ok_r[j] != 0
            if n_tans:
                # Orientation (T % 4 == 0): sectors are symmetric about both axes, so the edges
                # below the folded angle (by tangents) and the quadrant give the sector.
                for j in range(w):
                    c_r[j] = 0
                for tk in t_tans:
                    for j in range(w):
                        c_r[j] += 1 if abs(gy_r[j]) > abs(gx_r[j]) * tk else 0
                    for j in range(w):
                        agx, agy = abs(gx_r[j]), abs(gy_r[j])
                        g = agx + agy  # 0 for flat pixels: angle 0, mid-sector, not next to an edge
                        amb_r[j] |= (abs(agy - agx * tk) <= _EDGE_MARGIN * g * (1.0 + tk)) & (g > 0.0)
                half = t_bins // 2
                for j in range(w):
                    nx, ny = np.int64(gx_r[j] < 0.0), np.int64(gy_r[j] < 0.0)
                    # Quadrants (+,+): c, (-,+): T/2 - c, (-,-): T/2 + c, (+,-): T - c (mod T);
                    # a flat pixel (gx = gy = 0: angle 0) has c = 0 in (+,+).
                    t = half * nx + t_bins * ny * (1 - nx) + (1 - 2 * (nx ^ ny)) * c_r[j]
                    t = t - t_bins if t >= t_bins else t
                    c_r[j] = m_r[j] * t_bins + t
                for j in range(w):
                    row_codes[j] = c_r[j] if ok_r[j] else neutral_code
            else:
                for j in range(w):
                    row_codes[j] = neutral_code
                    if not ok_r[j]:
                        continue
                    gx, gy = gx_r[j], gy_r[j]
                    t = 0
                    if gx != 0.0 or gy != 0.0:
                        agx, agy = abs(gx), abs(gy)
                        a = math.atan(agy / agx) if agx >= agy else math.pi / 2 - math.atan(agx / agy)
                        angle = a if gx >= 0.0 else math.pi - a
                        angle = -angle if gy < 0.0 else angle
                        theta = angle + two_pi if angle < 0 else angle
                        tv = theta / two_pi * t_bins + 0.5
                        amb_r[j] |= _near_integer(tv)
                        t = int(math.floor(tv)) % t_bins
                    row_codes[j] = m_r[j] * t_bins + t
            for j in range(w):
                if ok_r[j]:
                    if not amb_r[j]:
                        continue
                elif xi_row[j] > 0.0 and ratio_r[j] > 0.0 and ratio_r[j] < np.inf:
                    # Not used for its ROA means: q NaN, 0 or inf (log not finite, as in the
                    # reference), or subnormal (log finite: used, code from numpy below).
                    qx, qy = qx_r[j], qy_r[j]
                    if not (0.0 < qx < np.inf and 0.0 < qy < np.inf):
                        continue
                    row_use[j] = True
                else:
                    continue
                if n_amb < cap:
                    amb_index[n_amb] = (k * h + i) * w + j
                    amb_values[n_amb, 0] = ratio_r[j]
                    amb_values[n_amb, 1] = qx_r[j]
                    amb_values[n_amb, 2] = qy_r[j]
                n_amb += 1
        n_valid[k] = count
    return n_amb


def wld_codes_compiled(values: FloatArray, cfg: WLDConfig,
                       name: str = "wld") -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """:func:`~eofusion.features.wld.wld_codes` by the fused kernel: the arrays of
    :func:`~eofusion.features.wld.wld_codes_reference`, bit for bit (same arguments and errors)."""
    arr = np.asarray(values)
    scale = SCALE_AMPLITUDE if cfg.scale == "amplitude" else SCALE_INTENSITY
    if cfg.scale == "db" or arr.dtype not in (np.float32, np.float64):
        # numpy's power may differ from the C library's by an ulp: convert with numpy itself.
        arr, scale = to_intensity(arr, cfg.scale), SCALE_INTENSITY
    if arr.ndim != 3:
        raise ValueError(f"{name}: expected (n, h, w) values, got shape {arr.shape}")
    n, h, w = arr.shape
    codes = np.empty((n, h, w), dtype=np.int64)
    use = np.empty((n, h, w), dtype=bool)
    n_valid = np.empty(n, dtype=np.int64)
    amb_index = np.empty(AMBIGUOUS_CAPACITY, dtype=np.int64)
    amb_values = np.empty((AMBIGUOUS_CAPACITY, 3), dtype=np.float64)
    lo, hi = -np.pi / 4, np.pi / 2  # the reference's excitation range
    zeros = np.zeros(1)
    neutral = int(quantise(zeros, zeros, zeros, np.zeros(1, dtype=bool), cfg)[0])
    # Excess ratios at the inner excitation edges (approximate: pixels near them are redone exactly).
    m_edges = np.tan(lo + (hi - lo) * np.arange(1, cfg.excitation_bins) / cfg.excitation_bins)
    t_bins = cfg.orientation_bins
    t_tans = np.tan((np.arange(t_bins // 4) + 0.5) * 2 * np.pi / t_bins) if t_bins % 4 == 0 else np.empty(0)
    n_amb = wld_kernel(arr, scale, cfg.centre_radius, cfg.ring_radius, cfg.roa_radius, cfg.excitation_bins,
                       cfg.orientation_bins, _TIE_TOL, neutral, m_edges, t_tans,
                       codes, use, n_valid, amb_index, amb_values)
    empty = np.flatnonzero(n_valid == 0)
    if empty.size:
        raise ValueError(f"{name}: patch(es) {empty.tolist()} contain no valid (finite, > 0) pixel")
    if n_amb > AMBIGUOUS_CAPACITY:
        return wld_codes_reference(values, cfg, name)
    if n_amb:
        ratio, qx, qy = amb_values[:n_amb].T
        codes.reshape(-1)[amb_index[:n_amb]] = quantise(ratio, np.log(qx), np.log(qy), np.ones(n_amb, dtype=bool), cfg)
    return codes, use


@numba.njit(cache=True, nogil=True)
def count_codes(codes, use, cell_h, cell_w, out):  # type: ignore[no-untyped-def]
    """Add the counts of ``codes`` where ``use`` to ``out``, per image and per cell.

    Args:
        codes: ``(n, h, w)`` integer bin indices in ``[0, dim)``.
        use: ``(n, h, w)`` bool mask of the pixels to count.
        cell_h, cell_w: Cell size; cells tile each image from its top-left corner (pixels of
            partial cells at the bottom or right are not counted).
        out: ``(n, h // cell_h, w // cell_w, dim)`` int64 counts, added to.
    """
    n, rows, cols, dim = out.shape
    for k in range(n):
        for i in range(rows * cell_h):
            r = i // cell_h
            for j in range(cols * cell_w):
                if use[k, i, j]:
                    out[k, r, j // cell_w, codes[k, i, j]] += 1


def warm_up() -> None:
    """Compile the kernels for the input types the pipeline uses, into numba's on-disk cache.

    Compiling takes tens of seconds; done once at set-up, so that an ingest's workers (each a process)
    only load the cache instead of all compiling at once.
    """
    rng = np.random.default_rng(0)
    cfg = WLDConfig()
    for dtype in (np.float32, np.float64):
        codes, use = wld_codes_compiled(rng.gamma(1.0, 1.0, (1, 16, 16)).astype(dtype), cfg)
        out = np.zeros((1, 2, 2, cfg.excitation_bins * cfg.orientation_bins), dtype=np.int64)
        count_codes(codes, use, 8, 8, out)
