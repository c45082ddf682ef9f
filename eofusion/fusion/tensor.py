"""Tensor-based late fusion of ranked lists (EOPEN).

Reference: I. Gialampoukidis, A. Moumtzidou, S. Vrochidis, I. Kompatsiaris et al., "A multimodal
tensor-based late fusion approach for satellite image search in Sentinel 2 images", MMM 2021,
and its EOPEN extension to Sentinel imagery and social-media retrieval (Yao, Moumtzidou, Dumitru,
Andreadis, Gialampoukidis, Vrochidis, Datcu, Kompatsiaris, "Early and late fusion of multiple
modalities in Sentinel imagery and social media retrieval").

Method
------
Each of the M modalities returns its top-L items. Conceptually these define a binary M-order
tensor ``T`` of side L: ``T[r_1, ..., r_M] = 1`` where one item occupies rank ``r_m`` in every
modality ``m``. The tensor is never materialised (it would have L**M cells): every item is
represented by its rank vector ``(r_1, ..., r_M)``, the coordinates of its one non-zero entry
(:class:`~eofusion.fusion.base.Candidates`).

For every pair of modalities ``(i, j)`` the 2-D surface of ``T`` is the L x L binary matrix of the
items by their rank in ``i`` and in ``j``. The jointly best-ranked items of a surface lie nearest
its top-left corner, so the surface is walked along its anti-diagonals ``r_i + r_j = 2, 3, ...``:
items on an earlier anti-diagonal come first and, within one anti-diagonal, the item with the
better single rank ``min(r_i, r_j)`` comes first (the walk starts from both edges and moves
inward). Each item gets the per-surface score ``1 / p`` where ``p`` is the position of its cell
in that walk. The surfaces are merged by summing the per-surface scores over all ``M(M-1)/2``
pairs; the fused ranking sorts items by that sum.

Choices (the papers leave them open or they are needed for the general case)
---------------------------------------------------------------------------
* **Missing items.** An item absent from list ``m`` is given the virtual rank ``L + 1`` in ``m``
  (one past the end of the tensor), where ``L`` is the length of the longest list. This places it
  on the surfaces of ``m`` behind every item that ``m`` did return, and lets items that only some
  modalities found (e.g. only the social-media search) still be ranked. Using the common L rather
  than each list's own length keeps "absent" worse than "present at any rank" in every modality.
* **Unequal lengths.** Lists may have any lengths (including 0); the tensor is conceptually
  ``L_1 x ... x L_M`` padded to the common side L, shorter lists simply have no entry further on.
* **Position = cell index of the walk, not count of items found.** ``p`` counts the cells of the
  walk up to and including the item's cell, ``p = (d-1)(d-2)/2 + 2(min-1) + 1`` with
  ``d = r_i + r_j`` (cells ``(a, b)`` and ``(b, a)`` are visited as a tie and share a position).
  Counting only occupied cells would make the score of an item depend on how crowded *other*
  items made a surface, and then an item ranked first in two lists could lose to one ranked first
  in a single list. With the absolute cell index the per-surface score is a strictly decreasing
  function of each rank, which guarantees:

  - an item ranked first in every list is ranked first;
  - if the sorted rank vector of item a is element-wise no worse than that of item b and better
    somewhere, a is ranked above b. In particular an item present in more lists at equal ranks
    beats one present in fewer;
  - the result is symmetric in the modalities (independent of the order of the lists).

  As the cell index grows quadratically with the rank sum, the method rewards items that two
  modalities *jointly* rank near the top more than reciprocal-rank fusion does: for example an
  item ranked (1, 1, absent) beats one ranked (2, 2, 2), where RRF prefers the latter.
* **M = 1.** There is no pair; the single surface degenerates to the list itself and the score is
  ``1 / rank``, so the list is returned unchanged. **M = 0** gives an empty ranking.
* **Ties** in the summed score (e.g. items with permuted rank vectors) are broken by the best
  single rank, then by item id (see :mod:`eofusion.fusion.base`).

Complexity: O(n * M^2) time and memory for n candidate items, fully vectorised.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import numpy.typing as npt

from eofusion.fusion.base import Candidates, FloatArray, ScoreFuser, fusers

__all__ = ["TensorFuser", "anti_diagonal_position", "surface_scores"]


def anti_diagonal_position(rank_i: npt.ArrayLike, rank_j: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Position of the cell ``(rank_i, rank_j)`` in the anti-diagonal walk of a 2-D surface.

    The walk visits anti-diagonals ``d = rank_i + rank_j = 2, 3, ...`` in order and, within one,
    cells by increasing ``min(rank_i, rank_j)``; the mirror cells ``(a, b)`` and ``(b, a)`` share
    a position (competition ranking, so the next cell's position skips one).

    Args:
        rank_i: 1-based ranks in modality i (any shape).
        rank_j: 1-based ranks in modality j (broadcastable with ``rank_i``).

    Returns:
        1-based positions; ``(1, 1)`` is 1, ``(1, 2)`` and ``(2, 1)`` are 2, ``(1, 3)`` is 4.

    Raises:
        ValueError: If a rank is below 1.
    """
    p = np.asarray(rank_i, dtype=np.int64)
    q = np.asarray(rank_j, dtype=np.int64)
    if np.any(p < 1) or np.any(q < 1):
        raise ValueError("ranks are 1-based")
    d = p + q
    # Cells on earlier anti-diagonals: sum_{e=2}^{d-1} (e-1) = (d-1)(d-2)/2; then two cells
    # (a mirror pair) for every smaller min on this anti-diagonal.
    return (d - 1) * (d - 2) // 2 + 2 * (np.minimum(p, q) - 1) + 1


def surface_scores(ranks: npt.NDArray[np.int64]) -> FloatArray:
    """Per-surface scores ``1 / position`` of every item on every pair-of-modalities surface.

    Args:
        ranks: ``(n, M)`` 1-based ranks with missing entries already set to the virtual rank.

    Returns:
        ``(n, M(M-1)/2)`` scores, columns in ``numpy.triu_indices(M, 1)`` order.
    """
    i, j = np.triu_indices(ranks.shape[1], 1)
    return 1.0 / anti_diagonal_position(ranks[:, i], ranks[:, j])


@fusers.register
class TensorFuser(ScoreFuser):
    """Tensor-based late fusion (EOPEN): merge the 2-D surfaces of the rank tensor.

    See the module docstring for the method and its guarantees.
    """

    name: ClassVar[str] = "tensor"
    title: ClassVar[str] = "Tensor-based late fusion"
    description: ClassVar[str] = (
        "Walks the anti-diagonals of every pair-of-modalities surface of the binary rank tensor "
        "and sums the reciprocal walk positions (Gialampoukidis et al., MMM 2021)."
    )

    def score(self, candidates: Candidates) -> FloatArray:
        """Sum over modality pairs of ``1 / anti-diagonal position`` (missing = rank L + 1).

        Args:
            candidates: The union of the input lists.

        Returns:
            ``(n,)`` fused scores.
        """
        virtual = int(candidates.lengths.max()) + 1
        ranks = np.where(candidates.present, candidates.ranks, virtual)
        if ranks.shape[1] == 1:
            return 1.0 / ranks[:, 0].astype(np.float64)
        # Sorting each row before summing makes the float sum independent of the column order,
        # so items with permuted rank vectors tie exactly and list order cannot leak in.
        return np.sort(surface_scores(ranks), axis=1).sum(axis=1)
