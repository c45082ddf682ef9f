"""Held-out evaluation of hashing: mAP@k of exact search, pure Hamming search and Hamming + re-ranking.

Protocol: a stratified split trains the network on ``train_fraction`` of the labelled items; every held-out
item is a query. The archive searched is either every item (``"all"``: the realistic case, the training items
are in the archive too) or the held-out items only (``"held-out"``); the query itself is always removed.
AP@k is the mean of precision@i over the relevant ranks i <= k divided by ``min(k, R)``, R being the number
of relevant archive items, computed with :func:`eofusion.evaluation.retrieval.average_precision`.

Hamming distances are integers, so ties are frequent at small ``K``. The archive is visited in a seeded
random order and ties are broken by that order, so that the class order of the files on disk cannot help.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.model_selection import StratifiedShuffleSplit

from eofusion.evaluation.retrieval import average_precision
from eofusion.hashing.codes import Metric, hamming_distances, pairwise_distances
from eofusion.hashing.model import DeepHasher, HashingConfig, ProgressCallback, train_hashing

__all__ = [
    "Archive",
    "HashingEvaluation",
    "SplitResult",
    "ap_at_k",
    "evaluate_hashing",
    "evaluate_splits",
    "stratified_split",
]

Archive = Literal["all", "held-out"]
Column = Literal["exact", "hamming", "reranked", "tie_break"]


def stratified_split(labels: ArrayLike, train_fraction: float, seed: int) -> tuple[NDArray[np.int64], ...]:
    """Stratified train / held-out split of single-label items.

    Args:
        labels: ``(n,)`` labels.
        train_fraction: Fraction of each class used for training, in ``(0, 1)``.
        seed: Random state.

    Returns:
        ``(train_indices, test_indices)``, each sorted.
    """
    y = np.asarray(labels)
    splitter = StratifiedShuffleSplit(n_splits=1, train_size=train_fraction, random_state=seed)
    train, test = next(splitter.split(np.zeros(len(y)), y))
    return np.sort(train).astype(np.int64), np.sort(test).astype(np.int64)


def ap_at_k(relevance: NDArray[np.bool_], n_relevant: int, k: int) -> float:
    """AP@k of one ranking given the relevance of its (at least ``k``) first items.

    Args:
        relevance: Relevance of the ranked items, best first.
        n_relevant: Number of relevant items in the whole archive.
        k: Cut-off.

    Returns:
        AP@k normalised by ``min(k, n_relevant)`` (0 when nothing is relevant).
    """
    top = relevance[:k]
    return average_precision(list(range(top.shape[0])), top, n_relevant=min(k, n_relevant))


@dataclass(frozen=True)
class SplitResult:
    """mAP@k of the three search modes on one split.

    Attributes:
        exact: Exact search on the full descriptors (``metric``).
        hamming: Pure Hamming ranking of the codes.
        reranked: Hamming top ``rerank_depth`` re-ranked by the full descriptors.
        tie_break: Hamming ranking with ties (equal distances) ordered by the full descriptors.
        n_queries: Held-out queries.
        archive_size: Items searched per query (the query excluded).
        reranked_by_depth: mAP@k of re-ranking the Hamming top ``depth``, for each of ``extra_depths``.
    """

    exact: float
    hamming: float
    reranked: float
    tie_break: float
    n_queries: int
    archive_size: int
    reranked_by_depth: dict[int, float] = field(default_factory=dict)


def evaluate_hashing(
    model: DeepHasher,
    descriptors: ArrayLike,
    labels: ArrayLike,
    queries: ArrayLike,
    archive: ArrayLike,
    *,
    k: int = 10,
    rerank_depth: int = 100,
    metric: Metric = "l1",
    tie_seed: int = 0,
    extra_depths: Sequence[int] = (),
) -> SplitResult:
    """mAP@k of exact, Hamming and re-ranked search for given query and archive indices.

    Args:
        model: Trained hasher.
        descriptors: ``(n, d)`` all descriptors.
        labels: ``(n,)`` labels; relevant means same label.
        queries: Indices of the query items.
        archive: Indices of the searched items (a query found in it is skipped for itself).
        k: Cut-off of AP@k.
        rerank_depth: Hamming candidates re-ranked with the full descriptor.
        metric: Distance on the full descriptors (exact search and re-ranking).
        tie_seed: Seed of the random archive order that breaks ties.
        extra_depths: Further re-ranking depths to report in ``reranked_by_depth``.

    Returns:
        The mAP@k values.
    """
    x = np.asarray(descriptors, dtype=np.float32)
    y = np.asarray(labels)
    q_idx = np.asarray(queries, dtype=np.int64)
    a_idx = np.random.default_rng(tie_seed).permutation(np.asarray(archive, dtype=np.int64))
    codes = model.encode(x)
    ham = hamming_distances(codes[q_idx], codes[a_idx])
    exact = pairwise_distances(x[q_idx], x[a_idx], metric)
    aps: dict[str, list[float]] = {"exact": [], "hamming": [], "reranked": [], "tie_break": []}
    by_depth: dict[int, list[float]] = {int(d): [] for d in extra_depths}
    for row, qi in enumerate(q_idx):
        keep = a_idx != qi
        cand = a_idx[keep]
        rel = y[cand] == y[qi]
        n_rel = int(rel.sum())
        d_exact = exact[row, keep]
        d_ham = ham[row, keep]
        aps["exact"].append(ap_at_k(rel[np.argsort(d_exact, kind="stable")], n_rel, k))
        by_ham = np.argsort(d_ham, kind="stable")
        aps["hamming"].append(ap_at_k(rel[by_ham], n_rel, k))
        aps["reranked"].append(ap_at_k(rel[_rerank_top(by_ham, d_exact, rerank_depth)], n_rel, k))
        for depth, values in by_depth.items():
            values.append(ap_at_k(rel[_rerank_top(by_ham, d_exact, depth)], n_rel, k))
        # lexsort: last key is primary (Hamming), the exact distance only orders equal Hamming distances.
        aps["tie_break"].append(ap_at_k(rel[np.lexsort((d_exact, d_ham))], n_rel, k))
    return SplitResult(
        exact=float(np.mean(aps["exact"])),
        hamming=float(np.mean(aps["hamming"])),
        reranked=float(np.mean(aps["reranked"])),
        tie_break=float(np.mean(aps["tie_break"])),
        n_queries=int(q_idx.shape[0]),
        archive_size=int(a_idx.shape[0] - (1 if np.isin(q_idx, a_idx).any() else 0)),
        reranked_by_depth={d: float(np.mean(v)) for d, v in by_depth.items()},
    )


def _rerank_top(by_hamming: NDArray[np.intp], exact: NDArray[np.float64], depth: int) -> NDArray[np.intp]:
    """Positions of the Hamming top ``depth`` sorted by exact distance, followed by the rest in Hamming order."""
    top = by_hamming[:depth]
    return np.concatenate([top[np.argsort(exact[top], kind="stable")], by_hamming[depth:]])


@dataclass
class HashingEvaluation:
    """Results of :func:`evaluate_splits` for one code length.

    Attributes:
        n_bits: Code length.
        splits: One result per seed.
        train_seconds: Training time per seed.
    """

    n_bits: int
    splits: list[SplitResult] = field(default_factory=list)
    train_seconds: list[float] = field(default_factory=list)

    def mean(self, attr: Column) -> float:
        """Mean over seeds of one mAP column."""
        return float(np.mean([getattr(s, attr) for s in self.splits]))

    def std(self, attr: Column) -> float:
        """Standard deviation over seeds of one mAP column."""
        return float(np.std([getattr(s, attr) for s in self.splits]))


def evaluate_splits(
    descriptors: ArrayLike,
    labels: ArrayLike,
    config: HashingConfig,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    train_fraction: float = 0.6,
    archive: Archive = "all",
    k: int = 10,
    rerank_depth: int = 100,
    metric: Metric = "l1",
    extra_depths: Sequence[int] = (),
    progress: ProgressCallback | None = None,
    on_model: Callable[[int, DeepHasher], None] | None = None,
) -> HashingEvaluation:
    """Train on a stratified split per seed and evaluate on the held-out queries.

    Args:
        descriptors: ``(n, d)`` descriptors.
        labels: ``(n,)`` single labels (stratification needs one label per item).
        config: Hashing configuration; its ``seed`` is replaced by each split seed.
        seeds: One split (and one network initialisation) per seed.
        train_fraction: Fraction of each class used for training.
        archive: ``"all"`` items or the ``"held-out"`` items only.
        k: Cut-off of mAP@k.
        rerank_depth: Hamming candidates re-ranked.
        metric: Distance on the full descriptors.
        extra_depths: Further re-ranking depths (see :func:`evaluate_hashing`).
        progress: Optional ``callback(fraction, message)``.
        on_model: Optional hook receiving ``(seed, model)`` after each training.

    Returns:
        Per-seed results.
    """
    x = np.asarray(descriptors, dtype=np.float32)
    y = np.asarray(labels)
    result = HashingEvaluation(n_bits=config.n_bits)
    for i, seed in enumerate(seeds):
        train, test = stratified_split(y, train_fraction, seed)
        model, history = train_hashing(x[train], y[train], replace(config, seed=seed))
        if on_model is not None:
            on_model(seed, model)
        searched = np.arange(len(y)) if archive == "all" else test
        split = evaluate_hashing(
            model, x, y, test, searched, k=k, rerank_depth=rerank_depth, metric=metric, tie_seed=seed,
            extra_depths=extra_depths,
        )
        result.splits.append(split)
        result.train_seconds.append(history.seconds)
        if progress is not None:
            progress((i + 1) / len(seeds), f"K={config.n_bits} seed {seed}: {split}")
    return result
