"""Binary codes: sign to bits, packing, pgvector ``bit(K)`` text, Hamming search and re-ranking (numpy).

Conventions used everywhere in EOFusion:

* an output ``h`` of the network becomes the bit ``1`` if ``h > 0`` and ``0`` otherwise (so an exact 0,
  which tanh almost never yields, counts as ``0``); the matching ``±1`` code is ``2 * bit - 1``;
* bits are packed most significant bit first (``np.packbits(..., bitorder="big")``), which is also the order
  of pgvector's ``bit(K)`` text form: character ``i`` of ``'0101...'`` is bit ``i``;
* Hamming distances are computed on packed codes by XOR and popcount (``np.bitwise_count``), on ``uint64``
  words when the packed width allows it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "Metric",
    "bits_from_outputs",
    "bits_to_signs",
    "bits_to_text",
    "hamming_distances",
    "hamming_search",
    "pack_bits",
    "pairwise_distances",
    "rerank",
    "text_to_bits",
    "unpack_bits",
]

Metric = Literal["euclidean", "sqeuclidean", "l1", "hellinger", "cosine"]
"""Distances available for exact search and re-ranking on full descriptors."""

BitArray = NDArray[np.uint8]
"""Unpacked bits: ``(n, K)`` uint8 holding 0 or 1."""


def bits_from_outputs(outputs: ArrayLike) -> BitArray:
    """Binarise real-valued network outputs (tanh relaxations or ``±1`` codes).

    Args:
        outputs: ``(n, K)`` or ``(K,)`` real values.

    Returns:
        uint8 bits of the same shape: ``1`` where the output is ``> 0``, else ``0``.
    """
    return (np.asarray(outputs) > 0).astype(np.uint8)


def bits_to_signs(bits: ArrayLike) -> NDArray[np.int8]:
    """Map bits ``{0, 1}`` to the ``{-1, +1}`` code they stand for."""
    b = np.asarray(bits, dtype=np.int8)
    return (2 * b - 1).astype(np.int8)


def _checked_bits(bits: ArrayLike) -> NDArray[np.generic]:
    """``bits`` as an array, raising ValueError if a value is not 0 or 1 (``np.isin`` cost 50 us per code)."""
    b = np.asarray(bits)
    if b.size and not ((b == 0) | (b == 1)).all():
        raise ValueError("bits must be 0 or 1")
    return b


def pack_bits(bits: ArrayLike) -> NDArray[np.uint8]:
    """Pack ``(n, K)`` bits into ``(n, ceil(K / 8))`` bytes, most significant bit first.

    Args:
        bits: 0/1 values, shape ``(n, K)`` or ``(K,)``.

    Returns:
        Packed uint8 array (the last byte is zero-padded when ``K`` is not a multiple of 8).

    Raises:
        ValueError: If a value is not 0 or 1.
    """
    b = _checked_bits(bits)
    return np.packbits(b.astype(np.uint8), axis=-1, bitorder="big")


def unpack_bits(packed: ArrayLike, n_bits: int) -> BitArray:
    """Inverse of :func:`pack_bits`.

    Args:
        packed: ``(n, nbytes)`` or ``(nbytes,)`` uint8.
        n_bits: Code length ``K`` (drops the padding of the last byte).

    Returns:
        ``(n, K)`` or ``(K,)`` uint8 bits.

    Raises:
        ValueError: If ``n_bits`` does not fit the packed width.
    """
    p = np.asarray(packed, dtype=np.uint8)
    if not 0 < n_bits <= 8 * p.shape[-1] or n_bits <= 8 * (p.shape[-1] - 1):
        raise ValueError(f"{n_bits} bits do not fit {p.shape[-1]} packed byte(s)")
    return np.unpackbits(p, axis=-1, count=n_bits, bitorder="big")


def bits_to_text(bits: ArrayLike) -> str | list[str]:
    """pgvector ``bit(K)`` literal(s): ``'0101...'``, character ``i`` being bit ``i``.

    Args:
        bits: ``(K,)`` for one code or ``(n, K)`` for several.

    Returns:
        One string for a 1-d input, a list of strings for a 2-d input.

    Raises:
        ValueError: If a value is not 0 or 1 or the array is not 1-d or 2-d.
    """
    b = np.asarray(bits)
    if b.ndim not in (1, 2):
        raise ValueError(f"expected (K,) or (n, K) bits, got shape {b.shape}")
    _checked_bits(b)
    # Map through ASCII bytes: one vectorised step instead of a join per code.
    chars = (b.astype(np.uint8) + ord("0")).astype(np.uint8)
    if b.ndim == 1:
        return chars.tobytes().decode("ascii")
    return [row.tobytes().decode("ascii") for row in chars]


def text_to_bits(text: str, n_bits: int | None = None) -> BitArray:
    """Parse a ``bit(K)`` literal such as pgvector returns it.

    Args:
        text: A string of ``'0'`` and ``'1'`` characters.
        n_bits: Expected length ``K``, checked if given.

    Returns:
        ``(K,)`` uint8 bits.

    Raises:
        ValueError: On another character, an empty string or the wrong length.
    """
    if not text or set(text) - {"0", "1"}:
        raise ValueError(f"not a bit string: {text[:40]!r}")
    if n_bits is not None and len(text) != n_bits:
        raise ValueError(f"expected {n_bits} bits, got {len(text)}")
    return (np.frombuffer(text.encode("ascii"), dtype=np.uint8) - ord("0")).astype(np.uint8)


def _as_words(packed: NDArray[np.uint8]) -> NDArray[np.unsignedinteger]:
    """View packed codes as the widest unsigned words their width allows (fewer XOR/popcount ops)."""
    width = packed.shape[-1]
    for dtype in (np.uint64, np.uint32, np.uint16):
        size = np.dtype(dtype).itemsize
        if width % size == 0:
            return np.ascontiguousarray(packed).view(dtype)
    return packed


def hamming_distances(queries: ArrayLike, codes: ArrayLike) -> NDArray[np.int32]:
    """Hamming distances between packed codes.

    Args:
        queries: ``(q, nbytes)`` or ``(nbytes,)`` packed uint8 codes.
        codes: ``(n, nbytes)`` packed uint8 codes of the archive.

    Returns:
        ``(q, n)`` int32 distances (``(n,)`` for a single 1-d query).

    Raises:
        ValueError: If the packed widths differ.
    """
    q = np.asarray(queries, dtype=np.uint8)
    db = np.asarray(codes, dtype=np.uint8)
    single = q.ndim == 1
    q2 = q.reshape(1, -1) if single else q
    if db.ndim != 2 or q2.shape[1] != db.shape[1]:
        raise ValueError(f"packed widths differ: queries {q2.shape}, codes {db.shape}")
    qw, dw = _as_words(q2), _as_words(db)
    out = np.empty((qw.shape[0], dw.shape[0]), dtype=np.int32)
    for i in range(qw.shape[0]):
        # Word by word into one int32 accumulator: a sum over a short last axis is several times slower in
        # numpy, and one query at a time keeps temporaries at (n,) for million-row archives.
        row = out[i]
        row[:] = np.bitwise_count(np.bitwise_xor(dw[:, 0], qw[i, 0]))
        for j in range(1, dw.shape[1]):
            row += np.bitwise_count(np.bitwise_xor(dw[:, j], qw[i, j]))
    return out[0] if single else out


def hamming_search(query: ArrayLike, codes: ArrayLike, k: int) -> tuple[NDArray[np.int64], NDArray[np.int32]]:
    """The ``k`` codes nearest to one query in Hamming distance (ties by archive position).

    Args:
        query: ``(nbytes,)`` packed query code.
        codes: ``(n, nbytes)`` packed archive codes.
        k: Number of results (capped at ``n``).

    Returns:
        ``(indices, distances)``, best first.
    """
    d = hamming_distances(query, codes)
    idx, dist = _top_k(d, k)
    return idx, dist.astype(np.int32, copy=False)


def _top_k(dist: NDArray[np.generic], k: int) -> tuple[NDArray[np.int64], NDArray[np.generic]]:
    """Indices of the ``k`` smallest values, sorted, ties by position (argpartition then stable sort)."""
    n = dist.shape[0]
    k = min(int(k), n)
    if k <= 0:
        return np.empty(0, dtype=np.int64), dist[:0]
    if k < n:
        # Keep every item tied with the k-th value so the stable sort resolves ties by position.
        kth = np.partition(dist, k - 1)[k - 1]
        cand = np.flatnonzero(dist <= kth)
    else:
        cand = np.arange(n)
    order = cand[np.argsort(dist[cand], kind="stable")][:k]
    return order.astype(np.int64), dist[order]


def pairwise_distances(queries: ArrayLike, vectors: ArrayLike, metric: Metric = "euclidean") -> NDArray[np.float64]:
    """Exact distances between full descriptors.

    Args:
        queries: ``(q, d)`` descriptors.
        vectors: ``(n, d)`` descriptors.
        metric: ``"euclidean"``, ``"sqeuclidean"``, ``"l1"``, ``"hellinger"`` (Euclidean distance of the
            square roots, for histograms) or ``"cosine"`` (1 - cosine similarity).

    Returns:
        ``(q, n)`` float64 distances.

    Raises:
        ValueError: On an unknown metric or mismatched dimensions.
    """
    a = np.atleast_2d(np.asarray(queries, dtype=np.float64))
    b = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    if metric == "l1":
        return np.abs(a[:, None, :] - b[None, :, :]).sum(axis=-1)
    if metric == "cosine":
        an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        return 1.0 - an @ bn.T
    if metric == "hellinger":
        a, b = np.sqrt(np.maximum(a, 0.0)), np.sqrt(np.maximum(b, 0.0))
    elif metric not in ("euclidean", "sqeuclidean"):
        raise ValueError(f"unknown metric {metric!r}")
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    sq = np.maximum(sq, 0.0)  # rounding can make an exact zero slightly negative
    return sq if metric == "sqeuclidean" else np.sqrt(sq)


def rerank(
    query_vector: ArrayLike,
    candidates: ArrayLike,
    vectors: ArrayLike | Callable[[NDArray[np.int64]], ArrayLike],
    k: int | None = None,
    metric: Metric = "euclidean",
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Re-rank candidate items (e.g. the Hamming top 100) by the exact distance of their full descriptors.

    Args:
        query_vector: ``(d,)`` full descriptor of the query.
        candidates: Archive indices (or ids usable by ``vectors``), best first.
        vectors: The ``(n, d)`` archive descriptors, or a function fetching the rows of given candidates
            (e.g. a database lookup), so the full archive never has to be in memory.
        k: Number of results to keep (all candidates if ``None``).
        metric: Distance on the full descriptors (see :func:`pairwise_distances`).

    Returns:
        ``(indices, distances)`` sorted by exact distance; ties keep the candidate order.
    """
    cand = np.asarray(candidates, dtype=np.int64).reshape(-1)
    rows = vectors(cand) if callable(vectors) else np.asarray(vectors)[cand]
    d = pairwise_distances(np.asarray(query_vector).reshape(1, -1), rows, metric)[0]
    order = np.argsort(d, kind="stable")
    if k is not None:
        order = order[:k]
    return cand[order], d[order]
