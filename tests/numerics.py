"""Rounding-error bounds for comparing floating-point results (one definition for the whole suite).

A float32 result computed in another order (chunks of rows, SIMD lanes, BLAS blocks, another CPU) differs from the
same result computed otherwise by up to its rounding error, which grows with the length of the sums and the size
of their terms. Fixed tolerances (``atol=1e-6``) are wrong both ways: too tight for long sums of large terms (a
dot product of 240 terms differed by 1.8e-6 on another x86-64 machine), too loose for small values. These helpers
give the classical bounds instead (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., ch. 3):
a sum or dot product of ``n`` terms in any order is within ``gamma_n * sum |terms|`` of the exact value, with
``gamma_n = n u / (1 - n u)`` and ``u`` the unit roundoff (half the machine epsilon).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

F64 = NDArray[np.float64]
# numpy's float32 log, exp, sin and cos (SIMD implementations included) are accurate to a few units in the last
# place, not correctly rounded: 4 ulps is the documented bound of the AVX-512 / SVML kernels numpy uses.
ELEMENTARY_ULPS = 4


def unit_roundoff(dtype: DTypeLike = np.float32) -> float:
    """``u``: the largest relative error of one correctly rounded operation (2**-24 for float32)."""
    return float(np.finfo(dtype).eps) / 2


def gamma(n: int, dtype: DTypeLike = np.float32) -> float:
    """``gamma_n = n u / (1 - n u)``: the relative error bound of a sum or product chain of ``n`` terms."""
    nu = n * unit_roundoff(dtype)
    if nu >= 1:
        raise ValueError(f"{n} terms are too many for a rounding bound in {np.dtype(dtype)}")
    return nu / (1 - nu)


def dot_error_bound(x: ArrayLike, w: ArrayLike, bias: float = 0.0, dtype: DTypeLike = np.float32) -> F64:
    """Bound on the rounding error of ``x @ w + bias`` computed in ``dtype`` in any summation order.

    ``x`` and ``w`` are taken as exact (they are the stored values); the bias is rounded to ``dtype`` once and
    added once. The bound is ``gamma_{k+2} * (|x| @ |w| + |bias|)`` per row, ``k`` the length of the sums.

    Args:
        x: ``(n, k)`` rows (or one ``(k,)`` row).
        w: ``(k,)`` weights.
        bias: Added after the sum.
        dtype: Precision of the computation.

    Returns:
        ``(n,)`` (or scalar) absolute bounds, float64.
    """
    xa = np.abs(np.asarray(x, dtype=np.float64))
    wa = np.abs(np.asarray(w, dtype=np.float64))
    return np.asarray(gamma(xa.shape[-1] + 2, dtype) * (xa @ wa + abs(bias)), dtype=np.float64)


def rbf_error_bound(x: ArrayLike, support_vectors: ArrayLike, dual_coef: ArrayLike, bias: float, gamma_: float,
                    dtype: DTypeLike = np.float32) -> F64:
    """Bound on the rounding error of a Gaussian-kernel score ``sum_j a_j exp(-g |x - s_j|^2) + b`` in ``dtype``.

    The squared distance is taken as computed by expansion, ``|x|^2 + |s_j|^2 - 2 x.s_j`` (k-term sums), so its
    error is at most ``gamma_{k+3} (|x|^2 + |s_j|^2 + 2 |x|.|s_j|)``; a distance error ``e`` moves the kernel value
    ``K`` by at most ``K (exp(g e) - 1)``; the exponential itself is off by ``ELEMENTARY_ULPS`` units of ``K``
    and ``g d`` by ``gamma_2`` of itself; the final m-term sum adds ``gamma_{m+2} (sum |a_j| K_j + |b|)``.

    Args:
        x: ``(n, k)`` rows.
        support_vectors: ``(m, k)``.
        dual_coef: ``(m,)`` signed coefficients ``a_j``.
        bias: ``b``.
        gamma_: ``g``.
        dtype: Precision of the computation.

    Returns:
        ``(n,)`` absolute bounds, float64.
    """
    xv = np.asarray(x, dtype=np.float64)
    sv = np.asarray(support_vectors, dtype=np.float64)
    a = np.abs(np.asarray(dual_coef, dtype=np.float64))
    u = unit_roundoff(dtype)
    k, m = xv.shape[-1], sv.shape[0]
    d = np.maximum((xv**2).sum(1)[:, None] + (sv**2).sum(1)[None, :] - 2 * xv @ sv.T, 0.0)
    d_err = gamma(k + 3, dtype) * ((xv**2).sum(1)[:, None] + (sv**2).sum(1)[None, :] + 2 * np.abs(xv) @ np.abs(sv).T)
    kern = np.exp(-gamma_ * d)
    arg_err = gamma_ * d_err + gamma(2, dtype) * gamma_ * d
    k_err = kern * np.expm1(arg_err) + ELEMENTARY_ULPS * u * kern
    return np.asarray(gamma(m + 2, dtype) * ((kern + k_err) @ a + abs(bias)) + k_err @ a, dtype=np.float64)


def sum_error_bound(x: ArrayLike, axis: int = -1, dtype: DTypeLike = np.float32) -> F64:
    """Bound on the rounding error of ``x.sum(axis)`` computed in ``dtype`` in any order."""
    xa = np.abs(np.asarray(x, dtype=np.float64))
    return np.asarray(gamma(xa.shape[axis], dtype) * xa.sum(axis=axis), dtype=np.float64)


def assert_within(actual: ArrayLike, reference: ArrayLike, bound: ArrayLike, what: str = "") -> None:
    """Assert ``|actual - reference| <= bound`` element by element, with the worst case in the message.

    Args:
        actual: Values under test.
        reference: Values they must equal up to rounding.
        bound: Absolute bound per element (broadcast), e.g. the sum of both sides' rounding bounds.
        what: Name used in the failure message.

    Raises:
        AssertionError: If any element is off by more than its bound (or the shapes differ).
    """
    a = np.asarray(actual, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if a.shape != r.shape:
        raise AssertionError(f"{what}: shapes differ, {a.shape} vs {r.shape}")
    b = np.broadcast_to(np.asarray(bound, dtype=np.float64), a.shape)
    diff = np.abs(a - r)
    bad = ~(diff <= b)  # NaN differences count as failures
    if bad.any():
        i = np.unravel_index(int(np.argmax(np.where(bad, diff - b, -np.inf))), a.shape)
        raise AssertionError(f"{what}: {int(bad.sum())} of {a.size} values beyond their rounding bound; worst at "
                             f"{tuple(int(j) for j in i)}: |{a[i]!r} - {r[i]!r}| = {diff[i]:.3g} > {b[i]:.3g}")


def within(actual: ArrayLike, reference: ArrayLike, bound: ArrayLike) -> bool:
    """``assert_within`` as a predicate (to show that a real error is caught)."""
    try:
        assert_within(actual, reference, bound)
    except AssertionError:
        return False
    return True


def assert_sums_to(x: ArrayLike, total: float, axis: int = -1, what: str = "") -> None:
    """Assert that float32 normalised histograms sum to ``total`` along ``axis``, to their rounding.

    Each element is a count scaled by a normalising factor (rounded at most twice) and the check's own sum adds
    ``gamma_k`` of the magnitudes, so ``|sum - total| <= gamma_{k+2} * sum |x|``.
    """
    arr = np.asarray(x)
    sums = arr.sum(axis=axis, dtype=arr.dtype if arr.dtype == np.float32 else np.float64)
    bound = gamma(arr.shape[axis] + 2, np.float32) * np.abs(arr.astype(np.float64)).sum(axis=axis)
    assert_within(sums, np.full(np.shape(sums), total), bound, what)


def mlp_error_bound(x: ArrayLike, mean: ArrayLike, std: ArrayLike, layers: Sequence[tuple[ArrayLike, ArrayLike]],
                    sqrt_input: bool = False, dtype: DTypeLike = np.float32) -> F64:
    """Bound on the rounding error of ``tanh(MLP((t(x) - mean) / std))`` in ``dtype`` (ReLU between layers).

    Forward error analysis in float64 along the exact pass: the square root and the standardisation round each
    value (``u``, ``gamma_2``), and an input error is divided by ``std``; a layer ``h @ W + b`` of fan-in ``k`` adds
    ``gamma_{k+1} (|h| @ |W| + |b|)`` and carries the incoming error through ``|W|``; ReLU is 1-Lipschitz; tanh
    scales an error ``e`` of its input ``h`` by at most ``sech^2(|h| - e)`` and adds ``ELEMENTARY_ULPS`` units of its
    value.

    Args:
        x: ``(n, d)`` inputs.
        mean: ``(d,)`` standardisation mean.
        std: ``(d,)`` standardisation scale.
        layers: ``(W, b)`` per linear layer, ``W`` of shape ``(in, out)``.
        sqrt_input: The network takes ``sqrt(max(x, 0))`` first.
        dtype: Precision of the computation.

    Returns:
        ``(n, out)`` absolute bounds on the outputs, float64.
    """
    u = unit_roundoff(dtype)
    z = np.asarray(x, dtype=np.float64)
    err = np.zeros_like(z)
    if sqrt_input:
        z = np.sqrt(np.maximum(z, 0.0))
        err = u * z
    s = np.abs(np.asarray(std, dtype=np.float64))
    h = (z - np.asarray(mean, dtype=np.float64)) / s
    err = gamma(2, dtype) * np.abs(h) + err * (1 + gamma(2, dtype)) / s
    for i, (w_, b_) in enumerate(layers):
        w = np.asarray(w_, dtype=np.float64)
        b = np.asarray(b_, dtype=np.float64)
        err = gamma(w.shape[0] + 1, dtype) * ((np.abs(h) + err) @ np.abs(w) + np.abs(b)) + err @ np.abs(w)
        h = h @ w + b
        if i < len(layers) - 1:
            h = np.maximum(h, 0.0)
    # tanh' = sech^2 is largest where |h| is smallest: a saturated output barely moves.
    slope = 1 - np.tanh(np.maximum(np.abs(h) - err, 0.0)) ** 2
    return np.asarray(err * slope + ELEMENTARY_ULPS * u * np.abs(np.tanh(h)), dtype=np.float64)


def assert_unit_norm(v: ArrayLike, axis: int = -1, what: str = "") -> None:
    """Assert that float32 vectors normalised to unit length have norm 1, to their rounding.

    The normalising norm and the check's own norm are k-term sums of squares (``gamma_k`` each, halved by the
    square root, plus its rounding) and each component is divided once: ``|norm - 1| <= 2 gamma_{k+2}``.
    """
    arr = np.asarray(v)
    norms = np.linalg.norm(arr, axis=axis)
    assert_within(norms, np.ones(np.shape(norms)), 2 * gamma(arr.shape[axis] + 2, np.float32), what)
