"""Ranked-retrieval metrics: precision@k, recall@k, average precision, MAP, ANN recall with ties.

Relevance of a ranking can be given in two ways:

* a collection (set, list, ...) of relevant ids; the number of relevant items defaults to its
  size, so relevant items that were never retrieved lower recall and AP, as in ``trec_eval``;
* a boolean numpy array aligned with the ranking (``relevant[i]`` says whether ``ranked[i]`` is
  relevant); the number of relevant items then defaults to the number of ``True`` entries (all
  relevant items retrieved) unless ``n_relevant`` says otherwise.

Rankings are best first and must not contain duplicates. Metrics that divide by the number of
relevant items return 0.0 when there is none, without warnings.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "average_precision",
    "mean_average_precision",
    "precision_at_k",
    "recall_at_k",
    "recall_at_k_with_ties",
    "relevance_mask",
]

Relevant = Collection[Hashable] | npt.NDArray[np.bool_]


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")


def relevance_mask(ranked: Sequence[Hashable], relevant: Relevant) -> npt.NDArray[np.bool_]:
    """Boolean relevance of each ranked item, in rank order.

    Args:
        ranked: Item ids, best first, without duplicates.
        relevant: Relevant ids, or a boolean array aligned with ``ranked``.

    Returns:
        ``(len(ranked),)`` boolean array.

    Raises:
        ValueError: On duplicate ids in ``ranked`` or a mask of the wrong length.
    """
    if isinstance(relevant, np.ndarray) and relevant.dtype == np.bool_:
        mask = relevant.reshape(-1)
        if mask.shape[0] != len(ranked):
            raise ValueError(f"relevance mask has {mask.shape[0]} entries for {len(ranked)} items")
        return mask.copy()
    ids = list(ranked)
    if len(set(ids)) != len(ids):
        # A duplicate would count the same relevant item twice.
        raise ValueError("ranked ids contain duplicates")
    rel = set(relevant)
    return np.fromiter((i in rel for i in ids), dtype=np.bool_, count=len(ids))


def _n_relevant(mask: npt.NDArray[np.bool_], relevant: Relevant, n_relevant: int | None) -> int:
    """Total number of relevant items (retrieved or not)."""
    if n_relevant is not None:
        if n_relevant < int(mask.sum()):
            raise ValueError("n_relevant is smaller than the number of relevant items retrieved")
        return int(n_relevant)
    if isinstance(relevant, np.ndarray) and relevant.dtype == np.bool_:
        return int(mask.sum())
    return len(set(relevant))


def precision_at_k(ranked: Sequence[Hashable], relevant: Relevant, k: int) -> float:
    """Fraction of the top ``k`` positions holding a relevant item.

    A ranking shorter than ``k`` is padded with non-relevant items (denominator stays ``k``), so a
    system cannot gain by returning fewer results.

    Args:
        ranked: Item ids, best first.
        relevant: Relevant ids, or a boolean array aligned with ``ranked``.
        k: Cut-off, at least 1.

    Returns:
        Precision@k in [0, 1].
    """
    _check_k(k)
    mask = relevance_mask(ranked, relevant)
    return float(mask[:k].sum()) / k


def recall_at_k(ranked: Sequence[Hashable], relevant: Relevant, k: int, n_relevant: int | None = None) -> float:
    """Fraction of all relevant items found in the top ``k``.

    Args:
        ranked: Item ids, best first.
        relevant: Relevant ids, or a boolean array aligned with ``ranked``.
        k: Cut-off, at least 1.
        n_relevant: Total number of relevant items, if not implied by ``relevant``.

    Returns:
        Recall@k in [0, 1]; 0.0 if there is no relevant item.
    """
    _check_k(k)
    mask = relevance_mask(ranked, relevant)
    total = _n_relevant(mask, relevant, n_relevant)
    return float(mask[:k].sum()) / total if total else 0.0


def average_precision(ranked: Sequence[Hashable], relevant: Relevant, n_relevant: int | None = None) -> float:
    """Average precision: mean of precision@i over the ranks i of the relevant items.

    Relevant items that are not retrieved contribute a precision of 0, i.e. the sum is divided by
    the total number of relevant items. With the full ranking of a scored collection (no tied
    scores) this equals scikit-learn's ``average_precision_score``.

    Args:
        ranked: Item ids, best first.
        relevant: Relevant ids, or a boolean array aligned with ``ranked``.
        n_relevant: Total number of relevant items, if not implied by ``relevant``.

    Returns:
        AP in [0, 1]; 0.0 if there is no relevant item.
    """
    mask = relevance_mask(ranked, relevant)
    total = _n_relevant(mask, relevant, n_relevant)
    if total == 0:
        return 0.0
    hits = np.cumsum(mask)
    precision_at_hits = hits[mask] / (np.flatnonzero(mask) + 1.0)
    return float(precision_at_hits.sum()) / total


def mean_average_precision(
    rankings: Sequence[Sequence[Hashable]],
    relevants: Sequence[Relevant],
    n_relevant: Sequence[int | None] | None = None,
) -> float:
    """Mean of :func:`average_precision` over queries.

    Args:
        rankings: One ranking (ids, best first) per query.
        relevants: The relevance of each query (ids or aligned boolean array).
        n_relevant: Optional total number of relevant items per query.

    Returns:
        MAP in [0, 1].

    Raises:
        ValueError: If there is no query or the sequences differ in length.
    """
    if len(rankings) == 0:
        raise ValueError("mean average precision needs at least one query")
    totals: Sequence[int | None] = [None] * len(rankings) if n_relevant is None else n_relevant
    if not len(rankings) == len(relevants) == len(totals):
        raise ValueError("rankings, relevants and n_relevant must have the same length")
    aps = [average_precision(r, rel, n) for r, rel, n in zip(rankings, relevants, totals, strict=True)]
    return float(np.mean(aps))


def recall_at_k_with_ties(
    true_dists: npt.ArrayLike,
    found_ids: Sequence[Hashable],
    true_ids: Sequence[Hashable],
    k: int,
    *,
    found_dists: npt.ArrayLike | None = None,
    rtol: float = 1e-6,
    atol: float = 0.0,
) -> float:
    """Nearest-neighbour recall@k where ties at the k-th true distance count as correct.

    The exact k nearest neighbours are not unique when several items share the k-th smallest
    distance; any of them is a correct answer (as in ann-benchmarks). A found item is correct if
    its true distance is at most the k-th true distance (within ``atol + rtol * |d_k|``, for
    distances recomputed by another code path). Only the first ``k`` positions of ``found_ids``
    count, and an id repeated there counts once.

    The true distance of a found item is taken from ``found_dists`` if given, else looked up in the
    ground truth (``true_ids``/``true_dists``); a found item absent from the ground truth then
    counts as wrong, so the ground truth must extend past every item tied with the k-th distance
    (compute it deeper than k, or give ``found_dists``).

    Args:
        true_dists: Exact distances of the ground-truth neighbours, ascending.
        found_ids: Ids returned by the (approximate) search, best first.
        true_ids: Ids of the ground-truth neighbours, aligned with ``true_dists``.
        k: Cut-off, at least 1. If the ground truth holds fewer than ``k`` items, all of them are
            required and the denominator is their number.
        found_dists: Optional true distances of ``found_ids`` (aligned).
        rtol: Relative tolerance on the k-th distance.
        atol: Absolute tolerance on the k-th distance.

    Returns:
        Recall in [0, 1].

    Raises:
        ValueError: On an empty or unsorted ground truth, or misaligned inputs.
    """
    _check_k(k)
    dists = np.asarray(true_dists, dtype=np.float64).reshape(-1)
    if dists.shape[0] != len(true_ids):
        raise ValueError("true_dists and true_ids must have the same length")
    if dists.shape[0] == 0:
        raise ValueError("the ground truth is empty")
    if np.any(np.diff(dists) < 0):
        raise ValueError("true_dists must be sorted ascending")
    kk = min(k, dists.shape[0])
    threshold = dists[kk - 1] + atol + rtol * abs(dists[kk - 1])

    # The first k positions only; a repeated id wastes its slot and is counted once.
    top: list[Hashable] = []
    top_pos: list[int] = []
    seen: set[Hashable] = set()
    for pos, fid in enumerate(found_ids[:k]):
        if fid not in seen:
            seen.add(fid)
            top.append(fid)
            top_pos.append(pos)

    if found_dists is not None:
        fd = np.asarray(found_dists, dtype=np.float64).reshape(-1)
        if fd.shape[0] != len(found_ids):
            raise ValueError("found_dists and found_ids must have the same length")
        cand = fd[np.asarray(top_pos, dtype=np.int64)]
    else:
        lookup = dict(zip(true_ids, dists.tolist(), strict=True))
        cand = np.array([lookup.get(fid, np.inf) for fid in top], dtype=np.float64)
    # With found_dists and k beyond the ground truth, more than kk items could pass the threshold.
    return min(int(np.count_nonzero(cand <= threshold)), kk) / kk
