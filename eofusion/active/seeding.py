"""Cold start of a session: which patches to ask about before any negative is marked.

A session starts from a few positives (patches the user found by search) and nothing else. The SVM
needs negatives; which patches are asked about first decides how fast it gets useful ones:

* ``"nearest"``: the unlabelled patches nearest to any positive, spread by farthest-point selection
  (what :func:`eofusion.active.round.run_round` does without negatives): new positives and the hard
  negatives next to them.
* ``"mean"``: the patches nearest to the mean of the positives (the query vector of embedding-search
  tools, Rocchio's centroid), spread the same way.
* ``"kmeans"``: one patch per k-means cluster of the pool (the patch nearest each centre, k-means++
  seeding then Lloyd iterations): the first marks cover the pool's main kinds of surface, so the
  negatives are diverse rather than all alike.

All work on feature-mapped rows (e.g. the Hellinger map of the pool) and return pool indices.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray

from eofusion.active.round import select_diverse

__all__ = ["COLD_STARTS", "ColdStart", "cold_start_queries", "kmeans_seeds", "nearest_queries"]

ColdStart = Literal["nearest", "mean", "kmeans"]
COLD_STARTS: tuple[ColdStart, ...] = ("nearest", "mean", "kmeans")


def _sq_dist(x: NDArray[np.float64], c: NDArray[np.float64]) -> NDArray[np.float64]:
    """``(n, k)`` squared Euclidean distances, clipped at 0 (float cancellation)."""
    d2 = np.einsum("ij,ij->i", x, x)[:, None] + np.einsum("ij,ij->i", c, c)[None, :] - 2.0 * (x @ c.T)
    return np.maximum(d2, 0.0)


def kmeans_seeds(features: NDArray[np.floating], k: int, seed: int = 0, n_iter: int = 20,
                 exclude: NDArray[np.intp] | None = None) -> NDArray[np.int64]:
    """``k`` distinct rows, one per k-means cluster: the row nearest each centre.

    Args:
        features: ``(n, D)`` mapped features of the pool.
        k: Number of seeds (capped at the rows available).
        seed: Seed of the k-means++ draws.
        n_iter: Lloyd iterations after the k-means++ seeding.
        exclude: Rows never returned (e.g. the positives already marked); they still shape the clusters.

    Returns:
        ``(min(k, available),)`` row indices, ordered by cluster size (largest first).
    """
    x = np.asarray(features, dtype=np.float64)
    n = x.shape[0]
    allowed = np.ones(n, dtype=bool)
    if exclude is not None and len(exclude):
        allowed[np.asarray(exclude)] = False
    k = min(k, int(allowed.sum()))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    # k-means++: each next centre drawn with probability proportional to its squared distance.
    centres = [int(rng.integers(n))]
    d2 = _sq_dist(x, x[centres])[:, 0]
    for _ in range(k - 1):
        total = d2.sum()
        nxt = int(rng.choice(n, p=d2 / total)) if total > 0 else int(rng.integers(n))
        centres.append(nxt)
        d2 = np.minimum(d2, _sq_dist(x, x[[nxt]])[:, 0])
    c = x[centres].copy()
    assign = np.zeros(n, dtype=np.intp)
    for _ in range(n_iter):
        assign = np.argmin(_sq_dist(x, c), axis=1)
        moved = False
        for j in range(k):
            members = assign == j
            if members.any():
                new = x[members].mean(axis=0)
                moved |= not np.allclose(new, c[j])
                c[j] = new
        if not moved:
            break
    sizes = np.bincount(assign, minlength=k)
    d = _sq_dist(x, c)
    d[~allowed] = np.inf
    chosen: list[int] = []
    for j in np.argsort(-sizes, kind="stable"):
        col = d[:, j].copy()
        col[chosen] = np.inf  # two centres never give the same row
        best = int(np.argmin(col))
        if np.isfinite(col[best]):
            chosen.append(best)
    return np.asarray(chosen, dtype=np.int64)


def nearest_queries(features: NDArray[np.floating], positives: NDArray[np.intp], k: int,
                    candidate_factor: int = 5, to_mean: bool = False) -> NDArray[np.int64]:
    """``k`` unlabelled rows near the positives (nearest any of them, or nearest their mean), spread out.

    Args:
        features: ``(n, D)`` mapped features of the pool.
        positives: Marked positive rows (at least one).
        k: Number of queries.
        candidate_factor: The queries are a farthest-point selection among the ``candidate_factor * k``
            nearest rows.
        to_mean: Rank by distance to the positives' mean instead of to the nearest positive.

    Returns:
        ``(<= k,)`` row indices, the nearest first.
    """
    x = np.asarray(features, dtype=np.float64)
    pos = np.asarray(positives, dtype=np.intp)
    refs = x[pos].mean(axis=0, keepdims=True) if to_mean else x[pos]
    d = _sq_dist(x, refs).min(axis=1)
    d[pos] = np.inf
    n_cand = min(candidate_factor * k, int(np.isfinite(d).sum()))
    if n_cand <= 0:
        return np.zeros(0, dtype=np.int64)
    candidates = np.argsort(d, kind="stable")[:n_cand]
    return candidates[select_diverse(x[candidates].astype(np.float32), k)].astype(np.int64)


def cold_start_queries(strategy: ColdStart, features: NDArray[np.floating], positives: NDArray[np.intp], k: int,
                       seed: int = 0, candidate_factor: int = 5) -> NDArray[np.int64]:
    """The first ``k`` queries of a session that has positives only.

    Args:
        strategy: ``"nearest"``, ``"mean"`` or ``"kmeans"`` (see the module doc).
        features: ``(n, D)`` mapped features of the pool.
        positives: Marked positive rows.
        k: Number of queries.
        seed: Seed of the k-means++ draws.
        candidate_factor: Candidates per query of the nearest-neighbour strategies.

    Returns:
        ``(<= k,)`` distinct row indices, none of them a positive.

    Raises:
        ValueError: On an unknown strategy.
    """
    if strategy == "kmeans":
        return kmeans_seeds(features, k, seed, exclude=np.asarray(positives, dtype=np.intp))
    if strategy in ("nearest", "mean"):
        return nearest_queries(features, positives, k, candidate_factor, to_mean=strategy == "mean")
    raise ValueError(f"unknown cold start {strategy!r}; expected one of {', '.join(COLD_STARTS)}")
