"""Label handling and triplet losses with in-batch mining (batch-hard, semi-hard), multi-label aware.

Two items are *positives* of each other if they share at least one label and *negatives* if they share none,
which reduces to "same class" for single-label data such as EuroSAT and follows MiLAN for BigEarthNet.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray

__all__ = [
    "Labels",
    "Mining",
    "batch_hard_triplet_loss",
    "cross_triplet_loss",
    "label_matrix",
    "semi_hard_triplet_loss",
    "triplet_loss",
]

Mining = Literal["batch-hard", "semi-hard"]

Labels = Sequence[Hashable] | Sequence[Collection[Hashable]] | NDArray[Any]
"""One label per item, one collection of labels per item, or an ``(n, n_classes)`` boolean indicator matrix."""


def label_matrix(
    labels: Labels,
    classes: Sequence[Hashable] | None = None,
) -> tuple[NDArray[np.bool_], list[Hashable]]:
    """Turn labels into an ``(n, n_classes)`` boolean indicator matrix.

    Args:
        labels: One label per item (``"Forest"``), one collection of labels per item (multi-label; a ``str`` is
            one label, not a collection), or an indicator matrix already.
        classes: Column order; defaults to the sorted distinct labels (range of columns for a matrix).

    Returns:
        ``(matrix, classes)``.

    Raises:
        ValueError: If a label is not in ``classes`` or an item has no label.
    """
    if isinstance(labels, np.ndarray) and labels.ndim == 2:
        mat = labels.astype(bool)
        names: list[Hashable] = list(classes) if classes is not None else list(range(mat.shape[1]))
    else:
        sets = [
            {lab} if isinstance(lab, str | bytes) or not isinstance(lab, Collection) else set(lab) for lab in labels
        ]
        names = list(classes) if classes is not None else sorted({lab for s in sets for lab in s}, key=str)
        col = {name: j for j, name in enumerate(names)}
        mat = np.zeros((len(sets), len(names)), dtype=bool)
        for i, s in enumerate(sets):
            for lab in s:
                if lab not in col:
                    raise ValueError(f"label {lab!r} is not among the classes")
                mat[i, col[lab]] = True
    if mat.shape[0] and not mat.any(axis=1).all():
        raise ValueError("every item needs at least one label")
    return mat, names


def _pair_masks(labels_a: torch.Tensor, labels_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive and negative pair masks from float indicator matrices: sharing >= 1 label is positive."""
    shared = labels_a @ labels_b.T
    return shared > 0, shared == 0


def _sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (clamped: rounding can make zeros slightly negative)."""
    d = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return d.clamp_min(0.0)


def batch_hard_triplet_loss(
    dist: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, margin: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch-hard triplet loss (Hermans et al. 2017): hardest positive vs hardest negative per anchor.

    Args:
        dist: ``(a, b)`` anchor-to-candidate distances.
        pos: ``(a, b)`` positive mask (the anchor itself must already be excluded).
        neg: ``(a, b)`` negative mask.
        margin: Required gap between the positive and the negative distance.

    Returns:
        ``(loss, active)``: the mean hinge over anchors having both a positive and a negative, and the fraction
        of those anchors whose hinge is non-zero.
    """
    valid = pos.any(1) & neg.any(1)
    if not bool(valid.any()):
        zero = dist.sum() * 0.0
        return zero, zero.detach()
    hardest_pos = torch.where(pos, dist, torch.full_like(dist, -torch.inf)).max(1).values
    hardest_neg = torch.where(neg, dist, torch.full_like(dist, torch.inf)).min(1).values
    hinge = torch.relu(hardest_pos - hardest_neg + margin)[valid]
    return hinge.mean(), (hinge > 0).float().mean().detach()


def semi_hard_triplet_loss(
    dist: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, margin: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Semi-hard triplet loss (FaceNet): every positive pair with its hardest negative beyond the positive.

    For a pair (anchor, positive) at distance ``d_ap`` the negative is the closest one with ``d_an > d_ap``
    (inside the margin if any); when no negative is farther than the positive, the farthest negative is used,
    as in TensorFlow Addons, so the loss never ignores a pair.

    Args:
        dist: ``(a, b)`` anchor-to-candidate distances.
        pos: ``(a, b)`` positive mask (anchor itself excluded).
        neg: ``(a, b)`` negative mask.
        margin: Required gap.

    Returns:
        ``(loss, active)`` over all (anchor, positive) pairs whose anchor has a negative.
    """
    a_idx, p_idx = torch.nonzero(pos & neg.any(1, keepdim=True), as_tuple=True)
    if a_idx.numel() == 0:
        zero = dist.sum() * 0.0
        return zero, zero.detach()
    d_ap = dist[a_idx, p_idx]  # (m,)
    d_an = dist[a_idx]  # (m, b)
    negs = neg[a_idx]
    farther = negs & (d_an > d_ap[:, None])
    inf = torch.full_like(d_an, torch.inf)
    semi = torch.where(farther, d_an, inf).min(1).values
    hardest_fallback = torch.where(negs, d_an, torch.full_like(d_an, -torch.inf)).max(1).values
    chosen = torch.where(farther.any(1), semi, hardest_fallback)
    hinge = torch.relu(d_ap - chosen + margin)
    return hinge.mean(), (hinge > 0).float().mean().detach()


def triplet_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, margin: float, mining: Mining = "batch-hard"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triplet loss within one batch of embeddings.

    Distances are squared Euclidean divided by ``4 * K``: for ``±1`` codes this is exactly the normalised
    Hamming distance (``||a - b||^2 = 4 * hamming``), so ``margin`` reads as a fraction of the bits.

    Args:
        embeddings: ``(n, K)`` relaxed codes (tanh outputs).
        labels: ``(n, n_classes)`` float indicator matrix.
        margin: Margin as a fraction of ``K``.
        mining: ``"batch-hard"`` or ``"semi-hard"``.

    Returns:
        ``(loss, active fraction)``.
    """
    dist = _sq_dist(embeddings, embeddings) / (4.0 * embeddings.shape[1])
    pos, neg = _pair_masks(labels, labels)
    eye = torch.eye(pos.shape[0], dtype=torch.bool, device=pos.device)
    pos = pos & ~eye
    if mining == "batch-hard":
        return batch_hard_triplet_loss(dist, pos, neg, margin)
    if mining == "semi-hard":
        return semi_hard_triplet_loss(dist, pos, neg, margin)
    raise ValueError(f"unknown mining {mining!r}")


def cross_triplet_loss(
    a: torch.Tensor,
    labels_a: torch.Tensor,
    b: torch.Tensor,
    labels_b: torch.Tensor,
    margin: float,
    mining: Mining = "batch-hard",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triplet loss with anchors from one modality and candidates from another (cosine distance).

    Used in both directions for cross-modal retrieval (text anchors vs patch candidates and back), in the
    manner of TextRS / VSE++. ``a`` and ``b`` are expected L2-normalised, so ``1 - a @ b.T`` is in ``[0, 2]``.

    Args:
        a: ``(n, D)`` anchors.
        labels_a: ``(n, C)`` float indicator matrix of the anchors.
        b: ``(m, D)`` candidates.
        labels_b: ``(m, C)`` float indicator matrix of the candidates.
        margin: Margin on the cosine distance.
        mining: ``"batch-hard"`` or ``"semi-hard"``.

    Returns:
        ``(loss, active fraction)``.
    """
    dist = 1.0 - a @ b.T
    pos, neg = _pair_masks(labels_a, labels_b)
    if mining == "batch-hard":
        return batch_hard_triplet_loss(dist, pos, neg, margin)
    if mining == "semi-hard":
        return semi_hard_triplet_loss(dist, pos, neg, margin)
    raise ValueError(f"unknown mining {mining!r}")
