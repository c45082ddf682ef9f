"""Weber Local Descriptor adapted to SAR speckle (ratio-based SAR-WLD).

Follows Cui, Dumitru and Datcu (2013), "Ratio-detector-based feature extraction for very high
resolution SAR image patch indexing", IEEE GRSL 10(5): the two WLD components are rebuilt from
*ratios of local averages* instead of pixel differences, because SAR speckle is multiplicative:
differences scale with the backscatter level, ratios of means do not.

* Differential excitation: ``xi = arctan(mean(ring) / mean(centre) - 1)`` where ``centre`` is a
  small window around the pixel and ``ring`` the surrounding annulus. Averaging both sides before
  taking the ratio suppresses speckle (ratio of averages, not average of ratios).
* Gradient orientation: the ROA (ratio of averages) edge detector,
  ``gx = log(mean(right half) / mean(left half))``, ``gy = log(mean(lower half) / mean(upper half))``,
  ``theta = arctan2(gy, gx)`` in ``[0, 2*pi)`` (array axes: x to the right, y downwards).

Both quantities are quantised into an ``M x T`` joint histogram normalised to sum 1. Because
every quantity is a ratio of sums of pixel values, multiplying the image by any positive
constant (a calibration change) leaves the descriptor unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from eofusion.features.base import Descriptor, FloatArray, Sensor, Vector

SarScale = Literal["intensity", "amplitude", "db"]

# Ratios this close to 1 (log-ratios this close to 0) are snapped to exactly 1 (0). Exact ties
# occur in flat or saturated areas; without snapping, float rounding could push them to either
# side of a bin edge and break the exact scale invariance.
_TIE_TOL = 1e-9


def db_to_linear(db: ArrayLike) -> NDArray[np.float64]:
    """Convert backscatter in decibels to linear power (intensity): ``10 ** (dB / 10)``.

    Args:
        db: Values in dB; NaN stays NaN (nodata).

    Returns:
        Linear intensity as float64.
    """
    return np.power(10.0, np.asarray(db, dtype=np.float64) / 10.0)


def to_intensity(values: ArrayLike, scale: SarScale = "intensity") -> NDArray[np.float64]:
    """Bring SAR values to linear intensity.

    Args:
        values: Pixel values.
        scale: ``"intensity"`` (linear power, returned as is), ``"amplitude"`` (squared, so an
            amplitude and an intensity product give the same descriptor) or ``"db"``.

    Returns:
        Linear intensity as float64.

    Raises:
        ValueError: On an unknown ``scale``.
    """
    if scale == "db":
        return db_to_linear(values)
    arr = np.asarray(values, dtype=np.float64)
    if scale == "amplitude":
        return arr * arr
    if scale == "intensity":
        return arr
    raise ValueError(f"unknown SAR scale {scale!r}; expected 'intensity', 'amplitude' or 'db'")


@dataclass(frozen=True)
class WLDConfig:
    """Parameters of the SAR Weber Local Descriptor.

    Attributes:
        excitation_bins: ``M``, bins of the differential excitation over its attainable range
            ``[-pi/4, pi/2)`` (``arctan(r - 1)`` with ``r >= 0``).
        orientation_bins: ``T``, sectors of the ROA gradient orientation over ``[0, 2*pi)``; sectors
            are centred on the directions ``k * 2*pi / T`` so that the exactly horizontal/vertical
            gradients of flat areas fall mid-sector, never on an edge.
        centre_radius: Half size of the centre window (1 -> 3x3).
        ring_radius: Half size of the outer window; the ring is the outer window minus the centre
            (3 -> 7x7 minus 3x3 = 40 pixels).
        roa_radius: Half size ``r`` of the ROA detector: each half window is ``(2r+1) x r`` pixels
            on one side of the centre line.
        scale: How input values are encoded: ``"intensity"``, ``"amplitude"`` or ``"db"``.
        band: Band of the input stack to describe (0 = VV in a VV/VH stack).
    """

    excitation_bins: int = 8
    orientation_bins: int = 8
    centre_radius: int = 1
    ring_radius: int = 3
    roa_radius: int = 3
    scale: SarScale = "intensity"
    band: int = 0

    def __post_init__(self) -> None:
        if self.excitation_bins < 1 or self.orientation_bins < 1:
            raise ValueError("excitation_bins and orientation_bins must be >= 1")
        if self.centre_radius < 0 or self.ring_radius <= self.centre_radius:
            raise ValueError("need 0 <= centre_radius < ring_radius")
        if self.roa_radius < 1:
            raise ValueError("roa_radius must be >= 1")
        if self.band < 0:
            raise ValueError("band must be >= 0")
        if self.scale not in ("intensity", "amplitude", "db"):
            raise ValueError(f"unknown SAR scale {self.scale!r}")


def _box_sum(padded: NDArray[np.float64], pad: int, h: int, w: int, rows: range, cols: range) -> NDArray[np.float64]:
    """Sum over a rectangle of offsets around every pixel, for a batch of zero-padded images.

    Uses shifted-slice additions (at most a handful per axis) rather than integral images: all
    terms are non-negative, so there is no catastrophic cancellation and the result is accurate to
    a few ulps, which keeps the ratios (and hence the histograms) stable under rescaling.

    Args:
        padded: ``(n, h + 2*pad, w + 2*pad)`` array, zero outside the image.
        pad: Padding width.
        h: Image height.
        w: Image width.
        rows: Row offsets (relative to the pixel) to include.
        cols: Column offsets to include.

    Returns:
        ``(n, h, w)`` sums.
    """
    n = padded.shape[0]
    col_sum = np.zeros((n, h + 2 * pad, w), dtype=np.float64)
    for dx in cols:
        col_sum += padded[:, :, pad + dx : pad + dx + w]
    out = np.zeros((n, h, w), dtype=np.float64)
    for dy in rows:
        out += col_sum[:, pad + dy : pad + dy + h, :]
    return out



class _BoxSums:
    """Window sums of zero-padded images, sharing the column sums of windows with the same columns.

    Each sum adds the same terms in the same order as :func:`_box_sum` (columns first, then rows),
    so the results are identical bit for bit; sharing only skips repeated work.
    """

    def __init__(self, padded: NDArray[np.float64], pad: int, h: int, w: int) -> None:
        self.padded, self.pad, self.h, self.w = padded, pad, h, w
        self._cols: dict[tuple[int, int], NDArray[np.float64]] = {}

    def _col_sum(self, cols: range) -> NDArray[np.float64]:
        key = (cols.start, cols.stop)
        if key not in self._cols:
            p, w = self.pad, self.w
            first, *rest = cols
            # 0 + a == a for the non-negative values here, so starting from a copy changes nothing.
            acc = self.padded[:, :, p + first : p + first + w].copy()
            for dx in rest:
                acc += self.padded[:, :, p + dx : p + dx + w]
            self._cols[key] = acc
        return self._cols[key]

    def box(self, rows: range, cols: range) -> NDArray[np.float64]:
        """``(n, h, w)`` sums over the window of row and column offsets around every pixel."""
        col_sum, p, h = self._col_sum(cols), self.pad, self.h
        first, *rest = rows
        out = col_sum[:, p + first : p + first + h, :].copy()
        for dy in rest:
            out += col_sum[:, p + dy : p + dy + h, :]
        return out


class _SeparableCounts:
    """Pixel counts of windows truncated at the border of an image without nodata: (rows in) x (cols in)."""

    def __init__(self, h: int, w: int) -> None:
        self.h, self.w = h, w

    @staticmethod
    def _inside(n: int, offsets: range) -> NDArray[np.float64]:
        pos = np.arange(n)[:, None] + np.asarray(offsets)[None, :]
        return ((pos >= 0) & (pos < n)).sum(axis=1).astype(np.float64)

    def box(self, rows: range, cols: range) -> NDArray[np.float64]:
        """``(1, h, w)`` counts (exact integers), broadcasting against ``(n, h, w)``."""
        return (self._inside(self.h, rows)[:, None] * self._inside(self.w, cols)[None, :])[None]


class WLDDescriptor(Descriptor):
    """Ratio-based SAR Weber Local Descriptor (joint excitation x orientation histogram)."""

    name: ClassVar[str] = "wld"
    sensor: ClassVar[Sensor] = "s1"
    version: ClassVar[str] = "1.0"

    def __init__(self, config: WLDConfig | None = None) -> None:
        """Create the descriptor.

        Args:
            config: Parameters; defaults to ``WLDConfig()`` (8 x 8 = 64 bins, linear intensity).
        """
        self.config = config or WLDConfig()

    @property
    def dim(self) -> int:
        """``excitation_bins * orientation_bins``."""
        return self.config.excitation_bins * self.config.orientation_bins

    @property
    def input_nbands(self) -> int:
        """Bands needed: up to and including ``config.band``."""
        return self.config.band + 1

    def metadata(self) -> dict[str, Any]:
        """Metadata plus the configuration."""
        return {**super().metadata(), "config": asdict(self.config)}

    def batch(self, patches: FloatArray) -> Vector:
        """Describe a stack of SAR patches.

        Args:
            patches: ``(n, bands, h, w)``; band ``config.band`` is used. NaN, non-positive (nodata
                0) and infinite pixels are excluded.

        Returns:
            ``(n, excitation_bins * orientation_bins)`` float32 histograms summing to 1, laid out
            excitation-major (index ``m * T + t``).

        Raises:
            ValueError: On a bad shape, or if a patch has no pixel with complete valid windows.
        """
        cfg = self.config
        stack = self._check_batch(patches)
        codes, use = wld_codes(stack[:, cfg.band], cfg, self.name)
        return _joint_histogram(codes, use, self.dim, self.name)


def wld_codes(values: FloatArray, cfg: WLDConfig, name: str = "wld") -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Per-pixel joint WLD bin index and the mask of pixels that count, for a batch of images.

    The compiled kernel (:mod:`eofusion.features.wld_kernel`) when numba is installed, else
    :func:`wld_codes_reference`; both return the same arrays bit for bit (tested), with the
    semantics documented there.

    Args:
        values: ``(n, h, w)`` SAR values in ``cfg.scale``.
        cfg: Descriptor parameters.
        name: Descriptor name for error messages.

    Returns:
        ``(codes, use)``: ``(n, h, w)`` int64 bin indices ``m * T + t`` and the bool mask.

    Raises:
        ValueError: If an image has no valid (finite, > 0) pixel.
    """
    try:
        from eofusion.features.wld_kernel import wld_codes_compiled
    except ImportError:  # numba missing: the numpy reference is exact, only slower
        return wld_codes_reference(values, cfg, name)
    return wld_codes_compiled(values, cfg, name)


def wld_codes_reference(values: FloatArray, cfg: WLDConfig,
                        name: str = "wld") -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """:func:`wld_codes` in numpy (same arguments, result and errors): the reference of the compiled kernel.

    Every window is truncated at the image border (zero padding, excluded from the means) and
    around nodata, so a pixel's code depends only on the image it is computed in. Pixels at
    least ``max(ring_radius, roa_radius)`` from every border get the same code, bit for bit, in
    any larger image that contains their neighbourhood (the sums add the same terms in the same
    order), which lets the ingest pipeline compute a whole strip at once.
    """
    x = to_intensity(values, cfg.scale)
    n, h, w = x.shape

    valid = np.isfinite(x) & (x > 0)
    all_valid = bool(valid.all())
    if not all_valid:
        x = np.where(valid, x, 0.0)
    # No per-patch normalisation on purpose: the invariance to calibration gain must come from
    # the ratios themselves (which also makes it hold for a gain that varies slowly in space).
    empty = np.flatnonzero(~valid.any(axis=(1, 2)))
    if empty.size:
        raise ValueError(f"{name}: patch(es) {empty.tolist()} contain no valid (finite, > 0) pixel")

    pad = max(cfg.ring_radius, cfg.roa_radius)
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    sums = _BoxSums(xp, pad, h, w)
    # Valid-pixel counts of the windows (exact small integers). Without nodata they only depend on
    # the position, as (rows inside the image) x (columns inside the image): no image-sized sums.
    counts = _SeparableCounts(h, w) if all_valid else _BoxSums(
        np.pad(valid.astype(np.float64), ((0, 0), (pad, pad), (pad, pad))), pad, h, w)

    def mean(rows: range, cols: range) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        # Mean over valid pixels only; windows are truncated at the patch border and around
        # nodata instead of being filled with zeros.
        s = sums.box(rows, cols)
        c = counts.box(rows, cols)
        ok = c > 0
        if all_valid:
            # Where a window holds no pixel its sum is 0: dividing by 1 there gives the same 0.
            return s / np.where(ok, c, 1.0), ok
        return np.divide(s, c, out=np.zeros_like(s), where=ok), ok

    rc, ro, rr = cfg.centre_radius, cfg.ring_radius, cfg.roa_radius
    full_c, full_o = range(-rc, rc + 1), range(-ro, ro + 1)
    s_c = sums.box(full_c, full_c)
    n_c = counts.box(full_c, full_c)
    s_ring = sums.box(full_o, full_o) - s_c
    n_ring = counts.box(full_o, full_o) - n_c

    span = range(-rr, rr + 1)
    right, ok_r = mean(span, range(1, rr + 1))
    left, ok_l = mean(span, range(-rr, 0))
    down, ok_d = mean(range(1, rr + 1), span)
    up, ok_u = mean(range(-rr, 0), span)

    use = valid & (n_c > 0) & (n_ring > 0) & (s_c > 0) & ok_r & ok_l & ok_d & ok_u
    use &= (right > 0) & (left > 0) & (down > 0) & (up > 0)

    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (s_ring / n_ring) / (s_c / n_c)
        gx = np.log(right / left)
        gy = np.log(down / up)
    use &= np.isfinite(ratio) & (ratio > 0) & np.isfinite(gx) & np.isfinite(gy)
    return quantise(ratio, gx, gy, use, cfg), use


def quantise(ratio: NDArray[np.float64], gx: NDArray[np.float64], gy: NDArray[np.float64],
             use: NDArray[np.bool_], cfg: WLDConfig) -> NDArray[np.int64]:
    """Joint bin index ``m * T + t`` from the centre/ring ratio and the ROA log-ratios.

    Args:
        ratio: Ring mean over centre mean.
        gx: ``log(right / left)``.
        gy: ``log(down / up)``.
        use: Pixels that count; the others get the code of neutral values.
        cfg: Descriptor parameters.

    Returns:
        int64 codes, the shape of the inputs.
    """
    # Unused pixels (nodata, NaN ratios) get neutral values; they are masked out of the histogram.
    excess = np.where(use & (np.abs(ratio - 1.0) >= _TIE_TOL), ratio - 1.0, 0.0)
    gx = np.where(use & (np.abs(gx) >= _TIE_TOL), gx, 0.0)
    gy = np.where(use & (np.abs(gy) >= _TIE_TOL), gy, 0.0)

    # Differential excitation lies in [-pi/4, pi/2) because ratio >= 0.
    xi = np.arctan(excess)
    lo, hi = -np.pi / 4, np.pi / 2
    m_bins = cfg.excitation_bins
    m = np.clip(np.floor((xi - lo) / (hi - lo) * m_bins), 0, m_bins - 1).astype(np.int64)

    # arctan2(+-0, +-0) depends on the sign of zero; force flat pixels to angle 0 explicitly.
    flat = (gx == 0.0) & (gy == 0.0)
    angle = np.arctan2(gy, gx)
    # Same values as np.mod(angle, 2 * pi) for angle in [-pi, pi] (fmod is exact there), 3x faster.
    theta = np.where(flat, 0.0, np.where(angle < 0, angle + 2 * np.pi, angle))
    t_bins = cfg.orientation_bins
    # floor(...) lies in [0, T] because theta lies in [0, 2 * pi]: "mod T" only folds T onto 0.
    t = np.floor(theta / (2 * np.pi) * t_bins + 0.5).astype(np.int64)
    t[t == t_bins] = 0
    return m * t_bins + t


def _joint_histogram(codes: NDArray[np.int64], use: NDArray[np.bool_], dim: int, name: str) -> Vector:
    """Per-patch normalised histogram of ``codes`` restricted to ``use``, vectorised with one bincount.

    Args:
        codes: ``(n, h, w)`` bin indices in ``[0, dim)``.
        use: ``(n, h, w)`` mask of pixels to count.
        dim: Number of bins.
        name: Descriptor name for error messages.

    Returns:
        ``(n, dim)`` float32, each row summing to 1.

    Raises:
        ValueError: If a patch has no usable pixel.
    """
    n = codes.shape[0]
    offsets = (np.arange(n, dtype=np.int64) * dim)[:, None, None]
    flat = (codes + offsets)[use]
    hist = np.bincount(flat, minlength=n * dim).reshape(n, dim).astype(np.float64)
    totals = hist.sum(axis=1)
    empty = np.flatnonzero(totals == 0)
    if empty.size:
        raise ValueError(f"{name}: patch(es) {empty.tolist()} have no valid pixel with complete neighbourhood windows")
    return (hist / totals[:, None]).astype(np.float32)
