"""Label cleaning: annotated items whose nearest neighbours mostly carry another label.

A patch labelled "Forest" whose five nearest neighbours in descriptor space are all "SeaLake"
was most likely clicked wrongly (or its descriptor is broken). The check is cheap and
model-free, so it is run on the annotation catalogue before the labels train anything.

Distances are Hellinger by default (Euclidean distance between square-rooted histograms), the
geometry of the default active-learning kernel; ``"euclidean"`` uses the raw descriptors.
Neighbours are found exactly, by chunked float32 matrix products: O(n^2 d), fine for the tens of
thousands of items a user annotates.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["SuspectLabel", "find_suspect_labels", "neighbour_disagreement"]

Metric = Literal["hellinger", "euclidean"]


@dataclass(frozen=True)
class SuspectLabel:
    """An annotated item whose neighbourhood disagrees with its label.

    Attributes:
        index: Row of the item in the annotated set.
        label: Its current label.
        suggested_label: Most frequent label among its neighbours (ties: the one of the nearest).
        disagreement: Fraction of the ``k`` neighbours whose label differs from ``label``.
        neighbours: Rows of the ``k`` nearest neighbours, nearest first.
    """

    index: int
    label: Any
    suggested_label: Any
    disagreement: float
    neighbours: tuple[int, ...]


def _nearest(features: NDArray[np.float32], k: int, chunk_rows: int) -> NDArray[np.int64]:
    """Indices of the ``k`` nearest other rows of every row, nearest first (ties by index)."""
    n = features.shape[0]
    sq = np.einsum("ij,ij->i", features, features)
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, chunk_rows):
        stop = min(start + chunk_rows, n)
        d2 = features[start:stop] @ features.T
        d2 *= -2.0
        d2 += sq[None, :]
        d2 += sq[start:stop, None]
        d2[np.arange(stop - start), np.arange(start, stop)] = np.inf  # an item is not its own neighbour
        part = np.argpartition(d2, k - 1, axis=1)[:, :k]
        pd = np.take_along_axis(d2, part, axis=1)
        order = np.lexsort((part, pd), axis=1)
        out[start:stop] = np.take_along_axis(part, order, axis=1)
    return out


def neighbour_disagreement(
    descriptors: ArrayLike,
    labels: ArrayLike,
    k: int = 5,
    metric: Metric = "hellinger",
    chunk_rows: int = 2048,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """For every annotated item, the fraction of its ``k`` nearest neighbours with another label.

    Args:
        descriptors: ``(n, d)`` descriptors of the annotated items (non-negative for Hellinger).
        labels: ``(n,)`` labels (any comparable values).
        k: Number of neighbours.
        metric: ``"hellinger"`` or ``"euclidean"``.
        chunk_rows: Rows per distance block (memory ``chunk_rows * n`` floats).

    Returns:
        ``(disagreement, neighbours)``: ``(n,)`` fractions in [0, 1] and ``(n, k)`` neighbour rows.

    Raises:
        ValueError: On mismatched lengths, ``k`` not in ``[1, n - 1]``, an unknown metric or
            negative values with the Hellinger metric.
    """
    x = np.asarray(descriptors, dtype=np.float32)
    y = np.asarray(labels)
    if x.ndim != 2:
        raise ValueError(f"expected a (n, d) descriptor matrix, got shape {x.shape}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"{x.shape[0]} descriptors but labels of shape {y.shape}")
    n = x.shape[0]
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be in [1, {n - 1}] for {n} items, got {k}")
    if metric == "hellinger":
        if float(x.min()) < 0:
            raise ValueError("the Hellinger metric needs non-negative descriptors (histograms)")
        x = np.sqrt(x)
    elif metric != "euclidean":
        raise ValueError(f"unknown metric {metric!r}; expected 'hellinger' or 'euclidean'")
    neighbours = _nearest(np.ascontiguousarray(x), k, chunk_rows)
    disagreement = (y[neighbours] != y[:, None]).mean(axis=1)
    return disagreement.astype(np.float64), neighbours


def find_suspect_labels(
    descriptors: ArrayLike,
    labels: ArrayLike,
    k: int = 5,
    min_disagreement: float = 0.5,
    metric: Metric = "hellinger",
    chunk_rows: int = 2048,
) -> list[SuspectLabel]:
    """Items whose ``k`` nearest neighbours *mostly* carry another label.

    Args:
        descriptors: ``(n, d)`` descriptors of the annotated items.
        labels: ``(n,)`` their labels.
        k: Number of neighbours (5: a majority needs 3 votes, robust to one odd neighbour).
        min_disagreement: An item is reported when strictly more than this fraction of its
            neighbours disagree (0.5: a strict majority).
        metric: ``"hellinger"`` (default) or ``"euclidean"``.
        chunk_rows: Rows per distance block.

    Returns:
        The suspects, most disagreeing first (ties by index).

    Raises:
        ValueError: As :func:`neighbour_disagreement`, or if ``min_disagreement`` is outside [0, 1).
    """
    if not 0.0 <= min_disagreement < 1.0:
        raise ValueError(f"min_disagreement must be in [0, 1), got {min_disagreement}")
    y = np.asarray(labels)
    disagreement, neighbours = neighbour_disagreement(descriptors, y, k, metric, chunk_rows)
    rows = np.flatnonzero(disagreement > min_disagreement)
    rows = rows[np.lexsort((rows, -disagreement[rows]))]
    out = []
    for i in rows:  # only over the (few) suspects
        neigh_labels = y[neighbours[i]].tolist()
        counts = Counter(neigh_labels)
        best = max(counts.values())
        # Ties go to the label of the nearest neighbour among the most frequent ones.
        suggested = next(lab for lab in neigh_labels if counts[lab] == best)
        out.append(
            SuspectLabel(
                index=int(i),
                label=y[i].item() if hasattr(y[i], "item") else y[i],
                suggested_label=suggested,
                disagreement=float(disagreement[i]),
                neighbours=tuple(int(j) for j in neighbours[i]),
            )
        )
    return out
