"""Baseline late-fusion methods: reciprocal-rank fusion, CombSUM and CombMNZ.

* **RRF** (G. V. Cormack, C. L. A. Clarke, S. Buettcher, "Reciprocal rank fusion outperforms
  Condorcet and individual rank learning methods", SIGIR 2009): ``score(d) = sum_m 1 / (c + r_m(d))``
  over the lists that contain ``d``, with ``c = 60`` by default and 1-based ranks.
* **CombSUM** / **CombMNZ** (E. A. Fox, J. A. Shaw, "Combination of multiple searches", TREC-2,
  1994; min-max normalisation as in J. H. Lee, SIGIR 1997): each list's scores are min-max
  normalised to [0, 1] and summed over the lists that contain the item; CombMNZ multiplies the
  sum by the number of lists that contain the item. A list whose scores are all equal carries no
  ordering information; its items all get the normalised score 1.

Items absent from a list contribute nothing to it. Note that min-max normalisation maps the last
item of a list to 0, so for CombSUM it weighs as much as an absent one (CombMNZ still counts it).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field

from eofusion.fusion.base import Candidates, FloatArray, ScoreFuser, fusers

__all__ = ["CombMNZFuser", "CombSUMFuser", "RRFFuser", "minmax_normalise"]


def minmax_normalise(scores: FloatArray) -> FloatArray:
    """Min-max normalise every column of a score matrix, ignoring NaN (absent) entries.

    Args:
        scores: ``(n, M)`` scores, NaN where an item is absent from a list.

    Returns:
        ``(n, M)`` scores in [0, 1], NaN kept; a column with a single distinct value becomes 1.
    """
    present = ~np.isnan(scores)
    if scores.size == 0:
        return scores.copy()
    # Fill absent entries with a neutral value so the reductions need no nan-aware variants
    # (nanmin warns on all-NaN columns, i.e. empty lists).
    lo = np.where(present, scores, np.inf).min(axis=0)
    hi = np.where(present, scores, -np.inf).max(axis=0)
    span = hi - lo
    flat = ~(span > 0)  # constant or empty list: no ordering information
    safe_span = np.where(flat, 1.0, span)
    safe_lo = np.where(np.isfinite(lo), lo, 0.0)
    norm = (np.where(present, scores, 0.0) - safe_lo) / safe_span
    norm = np.where(flat, 1.0, norm)
    return np.where(present, norm, np.nan)


def _sorted_row_sum(values: FloatArray) -> FloatArray:
    """Row sums taken over sorted rows, so the result does not depend on the column order."""
    return np.sort(values, axis=1).sum(axis=1)


@fusers.register
class RRFFuser(ScoreFuser):
    """Reciprocal-rank fusion (Cormack et al., 2009)."""

    name: ClassVar[str] = "rrf"
    title: ClassVar[str] = "Reciprocal rank fusion"
    description: ClassVar[str] = "Sum over lists of 1 / (rank_constant + rank) (Cormack et al., 2009)."

    rank_constant: float = Field(
        60.0, ge=0.0, description="The constant k of RRF; larger values flatten the rank weights."
    )

    def score(self, candidates: Candidates) -> FloatArray:
        """Sum of ``1 / (rank_constant + rank)`` over the lists containing each item.

        Args:
            candidates: The union of the input lists.

        Returns:
            ``(n,)`` fused scores.
        """
        present = candidates.present
        # Absent entries get rank 1 only to keep the division finite; they are zeroed after.
        denom = self.rank_constant + np.where(present, candidates.ranks, 1).astype(np.float64)
        contrib = np.where(present, 1.0 / denom, 0.0)
        return _sorted_row_sum(contrib)


@fusers.register
class CombSUMFuser(ScoreFuser):
    """CombSUM of min-max normalised scores."""

    name: ClassVar[str] = "combsum"
    title: ClassVar[str] = "CombSUM"
    description: ClassVar[str] = "Sum over lists of the min-max normalised scores (Fox & Shaw, 1994)."

    def score(self, candidates: Candidates) -> FloatArray:
        """Sum of the min-max normalised scores over the lists containing each item.

        Args:
            candidates: The union of the input lists.

        Returns:
            ``(n,)`` fused scores.
        """
        norm = minmax_normalise(candidates.scores)
        return _sorted_row_sum(np.nan_to_num(norm, nan=0.0))


@fusers.register
class CombMNZFuser(ScoreFuser):
    """CombMNZ: CombSUM times the number of lists containing the item."""

    name: ClassVar[str] = "combmnz"
    title: ClassVar[str] = "CombMNZ"
    description: ClassVar[str] = "CombSUM multiplied by the number of lists that contain the item (Fox & Shaw, 1994)."

    def score(self, candidates: Candidates) -> FloatArray:
        """CombSUM score times the number of lists containing each item.

        Args:
            candidates: The union of the input lists.

        Returns:
            ``(n,)`` fused scores.
        """
        norm = minmax_normalise(candidates.scores)
        hits = candidates.present.sum(axis=1)
        return _sorted_row_sum(np.nan_to_num(norm, nan=0.0)) * hits
