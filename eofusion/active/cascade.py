"""Cascaded learning across grid levels (Algorithm 1 of the CANDELA data-mining module).

Dumitru, Datcu et al. ("Understanding satellite images: a data mining module for Sentinel
images", Big Earth Data 4(4), 2020) search a large archive coarse-to-fine: active learning first
runs on the coarse cells of a multi-level grid; the coarse cells the user accepts as positive
restrict the pool of the next, finer level to their children, where the next active-learning
session runs, and so on. The fine pool shrinks by the fraction of rejected coarse cells, so each
level is both faster and less cluttered with irrelevant patches.

The functions here are the pure part of that loop: given the accepted coarse ids and the
fine-to-coarse parent mapping (``eofusion.grid.Cell.parent``, or the ``parent`` column of the
catalogue), return the restricted fine pool. Ids may be integers or strings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["accepted_from_scores", "cascade_pools", "restrict_fine_pool", "to_local_indices"]


def _ids(values: ArrayLike, what: str) -> NDArray[np.generic]:
    arr = np.asarray(values)
    if arr.ndim == 0:
        arr = arr.reshape(1)  # a single id
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a 1-D array of ids, got shape {arr.shape}")
    if arr.dtype == object:
        raise ValueError(f"{what} must hold integers or strings (encode tuple ids as strings first)")
    return arr


def restrict_fine_pool(accepted_coarse: ArrayLike, fine_parents: ArrayLike) -> NDArray[np.int64]:
    """Fine items whose coarse parent was accepted.

    Args:
        accepted_coarse: Ids of the coarse cells accepted as positive (any order, duplicates
            allowed).
        fine_parents: ``(n_fine,)`` parent id of every fine item (item ``i`` of the fine pool has
            parent ``fine_parents[i]``).

    Returns:
        Sorted ``int64`` indices into the fine pool (empty when nothing was accepted).

    Raises:
        ValueError: On arrays that are not 1-D, object dtypes, or integer ids mixed with strings.
    """
    accepted = _ids(accepted_coarse, "accepted_coarse")
    parents = _ids(fine_parents, "fine_parents")
    if accepted.size == 0 or parents.size == 0:
        return np.zeros(0, dtype=np.int64)
    a_num = np.issubdtype(accepted.dtype, np.number)
    p_num = np.issubdtype(parents.dtype, np.number)
    if a_num != p_num:
        raise ValueError(f"id types differ: accepted ids are {accepted.dtype}, parent ids are {parents.dtype}")
    # isin sorts both sides once: O((n + m) log(n + m)), no Python loop over the fine items.
    return np.flatnonzero(np.isin(parents, accepted)).astype(np.int64)


def accepted_from_scores(coarse_ids: ArrayLike, scores: ArrayLike, threshold: float = 0.0) -> NDArray[np.generic]:
    """Coarse ids a round predicts positive (``score > threshold``), as a default acceptance.

    In the interactive loop the user confirms the accepted coarse cells; in a batch run (or in the
    oracle simulation) the classifier's decision stands in for that confirmation.

    Args:
        coarse_ids: ``(n_coarse,)`` ids aligned with ``scores``.
        scores: ``(n_coarse,)`` SVM decision values of the coarse pool.
        threshold: Decision threshold (0 for an SVM).

    Returns:
        The accepted ids, in pool order.

    Raises:
        ValueError: If the two arrays differ in length.
    """
    ids = _ids(coarse_ids, "coarse_ids")
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if ids.shape[0] != s.shape[0]:
        raise ValueError(f"{ids.shape[0]} coarse ids but {s.shape[0]} scores")
    return ids[s > threshold]


def cascade_pools(
    accepted_top: ArrayLike, level_parents: Sequence[ArrayLike], level_ids: Sequence[ArrayLike]
) -> list[NDArray[np.int64]]:
    """Propagate an acceptance down several levels without further feedback.

    Every item of level ``k`` whose ancestor at the top level was accepted is kept: the pools
    are nested (a level-``k`` item is kept iff its parent at level ``k - 1`` was kept).

    Args:
        accepted_top: Accepted ids of the coarsest level.
        level_parents: For each finer level, top-down, the parent id of each of its items.
        level_ids: For each finer level, the id of each of its items (parents of the next level).

    Returns:
        For each finer level, the sorted indices of its kept items.

    Raises:
        ValueError: If ``level_parents`` and ``level_ids`` differ in length or within a level.
    """
    if len(level_parents) != len(level_ids):
        raise ValueError(f"{len(level_parents)} parent arrays but {len(level_ids)} id arrays")
    pools: list[NDArray[np.int64]] = []
    accepted = _ids(accepted_top, "accepted_top")
    for depth, (parents, ids) in enumerate(zip(level_parents, level_ids, strict=True)):
        p = _ids(parents, f"level_parents[{depth}]")
        i = _ids(ids, f"level_ids[{depth}]")
        if p.shape != i.shape:
            raise ValueError(f"level {depth}: {p.shape[0]} parents but {i.shape[0]} ids")
        kept = restrict_fine_pool(accepted, p)
        pools.append(kept)
        accepted = i[kept]
    return pools


def to_local_indices(restricted: ArrayLike, global_indices: ArrayLike) -> NDArray[np.int64]:
    """Translate fine-pool indices into positions within a restricted pool.

    :func:`eofusion.active.round.run_round` works on the rows it is given; after
    ``pool[restricted]`` the labels the user gave earlier (global fine indices) must be mapped to
    the new row numbers. Indices outside the restricted pool are dropped (their parent was
    rejected, so they are not part of this level's session).

    Args:
        restricted: Sorted indices returned by :func:`restrict_fine_pool`.
        global_indices: Fine-pool indices to translate.

    Returns:
        Positions ``j`` with ``restricted[j]`` in ``global_indices``, sorted.
    """
    r = np.asarray(restricted, dtype=np.int64).reshape(-1)
    g = np.asarray(global_indices, dtype=np.int64).reshape(-1)
    return np.flatnonzero(np.isin(r, g)).astype(np.int64)
