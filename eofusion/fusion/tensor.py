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
items ranked by both ``i`` and ``j``, at cell ``(r_i, r_j)``. The jointly best-ranked items of a
surface lie nearest its top-left corner, so the surface is walked along its anti-diagonals
``r_i + r_j = 2, 3, ...``: items on an earlier anti-diagonal come first and, within one
anti-diagonal, the item with the better single rank ``min(r_i, r_j)`` comes first (the walk
starts from both edges and moves inward). The walk turns each surface into a ranked list of
candidates, one per ranking position: an item's *surface rank* is one plus the number of items of
that surface met earlier in the walk. The ``M(M-1)/2`` surface lists are merged by reciprocal
rank: an item scores ``sum over the surfaces it lies on of 1 / (c + surface rank)``, with the
constant ``c`` of reciprocal-rank fusion (60, Cormack et al. 2009); the fused ranking sorts
items by that sum.

Choices (the papers leave them open or they are needed for the general case)
---------------------------------------------------------------------------
* **Items missing from a list** are not on the surfaces of that modality: the tensor has no
  entry for them there. An item ranked by h of the M modalities therefore lies on
  ``h(h-1)/2`` surfaces, so agreement between modalities counts quadratically, and an item
  found by a single modality (on no surface) comes after every item that two modalities found,
  in the order of its best position. An earlier version instead gave missing items a virtual
  rank ``L + 1`` and scored ``1 / walk position`` on every surface: it let one strong pair of
  ranks outweigh agreement deeper in the lists, and on CrisisLexT26 it fell below the time
  modality alone (``bench/RESULTS.md``).
* **Surface rank = items met, merged with a constant.** ``1 / walk position`` falls with the
  square of the rank sum, so a fused list was decided by the first few cells of each surface.
  Counting the items met on the surface and adding ``c`` gives the merge the same depth as
  reciprocal-rank fusion, while each surface still orders its items by the anti-diagonal walk.
* **Unequal lengths.** Lists may have any lengths (including 0); an empty list puts nothing on
  its surfaces.
* **Tied scores within a list** share a rank (competition ranking, see
  :mod:`eofusion.fusion.base`): they occupy the same index along that modality's axis of the
  tensor, because the modality does not order them; items in the same cell of a surface share a
  surface rank. Without this the place modality (every post resolved to one town is at distance
  0) would hand out ranks in the order the database returned the tied posts, and that arbitrary
  order would weigh like evidence on every surface.
* **M = 1.** There is no pair; the single list is its own surface, scored ``1 / (c + rank)``, so
  the list is returned unchanged. **M = 0** gives an empty ranking.
* **Ties** in the summed score are broken by the best position in any list, then by item id (see
  :mod:`eofusion.fusion.base`).

Guarantees (tested): the result is symmetric in the modalities; an item ranked first in every
list is ranked first; an item ranked no worse than another in every modality and found by every
modality that found the other is ranked no lower, and strictly higher if it is better somewhere;
an item found by more modalities at equal ranks is ranked above one found by fewer. Unlike
``1 / walk position`` the score of an item also depends on how many other items precede it on a
surface (that is what a surface rank is), so an item is not guaranteed to beat one whose rank
vector is a worse *permutation* of its own.

Complexity: O(n log n * M^2) time and O(n * M^2) memory for n candidate items, vectorised per
surface.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import Field

from eofusion.fusion.base import Candidates, FloatArray, ScoreFuser, fusers

__all__ = ["TensorFuser", "anti_diagonal_position", "surface_ranks"]


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


def surface_ranks(ranks: npt.NDArray[np.int64], present: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Rank of every item on every pair-of-modalities surface, in the anti-diagonal walk.

    Args:
        ranks: ``(n, M)`` 1-based ranks (any value where absent).
        present: ``(n, M)`` mask of the items each modality ranked.

    Returns:
        ``(n, M(M-1)/2)`` surface ranks, columns in ``numpy.triu_indices(M, 1)`` order: one plus
        the number of items of the surface with an earlier walk position (items in the same cell
        share a rank); ``0`` where the item is not on the surface.
    """
    i, j = np.triu_indices(ranks.shape[1], 1)
    on_surface = present[:, i] & present[:, j]
    # Clip absent ranks to 1 only to keep the position defined; they are masked out below.
    position = anti_diagonal_position(np.where(on_surface, ranks[:, i], 1), np.where(on_surface, ranks[:, j], 1))
    out = np.zeros(position.shape, dtype=np.int64)
    for col in range(position.shape[1]):
        mask = on_surface[:, col]
        walked = np.sort(position[mask, col])
        out[mask, col] = np.searchsorted(walked, position[mask, col], side="left") + 1
    return out


@fusers.register
class TensorFuser(ScoreFuser):
    """Tensor-based late fusion (EOPEN): merge the 2-D surfaces of the rank tensor.

    See the module docstring for the method, its choices and its guarantees.
    """

    name: ClassVar[str] = "tensor"
    title: ClassVar[str] = "Tensor-based late fusion"
    description: ClassVar[str] = (
        "Walks the anti-diagonals of every pair-of-modalities surface of the binary rank tensor and "
        "merges the surfaces' rankings by reciprocal rank (after Gialampoukidis et al., MMM 2021)."
    )

    rank_constant: float = Field(
        60.0, ge=0.0, description="Constant added to each surface rank when the surfaces are merged, as in RRF."
    )

    def score(self, candidates: Candidates) -> FloatArray:
        """Sum over the surfaces an item lies on of ``1 / (rank_constant + surface rank)``.

        Args:
            candidates: The union of the input lists.

        Returns:
            ``(n,)`` fused scores.
        """
        if candidates.ranks.shape[1] == 1:
            return 1.0 / (self.rank_constant + candidates.ranks[:, 0].astype(np.float64))
        surface = surface_ranks(candidates.ranks, candidates.present)
        contrib = np.where(surface > 0, 1.0 / (self.rank_constant + np.maximum(surface, 1)), 0.0)
        # Sorting each row before summing makes the float sum independent of the column order,
        # so items with permuted surface ranks tie exactly and list order cannot leak in.
        return np.sort(contrib, axis=1).sum(axis=1)
