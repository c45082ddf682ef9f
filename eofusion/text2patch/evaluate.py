"""Held-out evaluation of text-to-patch retrieval: precision@k of class-name queries, per class.

The model is trained on a stratified split; every class name (made readable, ``"SeaLake"`` -> ``"Sea Lake"``)
queries the held-out patches only, and precision@k counts patches of that class among the first ``k``.
Chance level is the class's share of the held-out patches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import ArrayLike

from eofusion.evaluation.retrieval import precision_at_k
from eofusion.hashing.evaluate import stratified_split
from eofusion.hashing.model import ProgressCallback
from eofusion.text2patch.encoder import TextEncoder
from eofusion.text2patch.model import Text2PatchConfig, Text2PatchModel, train_text2patch
from eofusion.text2patch.vocabulary import ClassText, build_vocabulary, readable_name

__all__ = ["QueryResult", "Text2PatchEvaluation", "evaluate_queries", "evaluate_text2patch_splits"]


@dataclass(frozen=True)
class QueryResult:
    """Precision@k of one query on one split.

    Attributes:
        query: The query text.
        target: The class counted as relevant.
        precision: Precision@k.
        chance: Share of the target class among the searched patches.
        top_labels: Labels of the first ``k`` patches.
    """

    query: str
    target: str
    precision: float
    chance: float
    top_labels: tuple[str, ...]


def evaluate_queries(
    model: Text2PatchModel,
    encoder: TextEncoder,
    descriptors: ArrayLike,
    labels: ArrayLike,
    queries: Mapping[str, str],
    k: int = 10,
) -> list[QueryResult]:
    """Precision@k of text queries over a set of patches.

    Args:
        model: Trained model.
        encoder: The sentence encoder the model was trained with.
        descriptors: ``(n, d)`` searched patches.
        labels: ``(n,)`` their classes.
        queries: Query text -> relevant class.
        k: Cut-off.

    Returns:
        One result per query, in the order given.
    """
    y = np.asarray(labels).astype(str)
    patch_vecs = model.embed_patches(descriptors)
    texts = list(queries)
    q = model.embed_queries(texts, encoder)
    sims = q @ patch_vecs.T
    out = []
    for i, text in enumerate(texts):
        target = queries[text]
        order = np.argsort(-sims[i], kind="stable")
        rel = y[order] == target
        out.append(QueryResult(
            query=text, target=target, precision=precision_at_k(list(range(len(order))), rel, k),
            chance=float(np.mean(y == target)), top_labels=tuple(y[order[:k]].tolist()),
        ))
    return out


@dataclass
class Text2PatchEvaluation:
    """Per-split query results.

    Attributes:
        results: ``results[split][query]``.
        seconds: Training time per split.
    """

    results: list[dict[str, QueryResult]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def mean_precision(self, query: str) -> float:
        """Mean precision@k of one query over the splits."""
        return float(np.mean([r[query].precision for r in self.results]))

    def mean_chance(self, query: str) -> float:
        """Mean chance level of one query over the splits."""
        return float(np.mean([r[query].chance for r in self.results]))


def evaluate_text2patch_splits(
    descriptors: ArrayLike,
    labels: ArrayLike,
    encoder: TextEncoder,
    config: Text2PatchConfig,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    train_fraction: float = 0.6,
    include_class_names: bool = True,
    class_texts: dict[str, ClassText] | None = None,
    extra_queries: Mapping[str, str] | None = None,
    k: int = 10,
    progress: ProgressCallback | None = None,
) -> Text2PatchEvaluation:
    """Train on a stratified split per seed; query the held-out patches with every class name.

    Args:
        descriptors: ``(n, d)`` descriptors.
        labels: ``(n,)`` class names.
        encoder: Sentence encoder (loaded once by the caller).
        config: Model configuration; ``seed`` is replaced by each split seed.
        seeds: Splits.
        train_fraction: Fraction of each class used for training.
        include_class_names: Train with the class names as texts; off, the class-name queries are unseen text.
        class_texts: Class-to-catalogue mapping (default: EuroSAT's).
        extra_queries: Further query text -> relevant class (free text).
        k: Cut-off.
        progress: Optional ``callback(fraction, message)``.

    Returns:
        Results per split, keyed by query text.
    """
    x = np.asarray(descriptors, dtype=np.float32)
    y = np.asarray(labels).astype(str)
    classes = sorted(set(y.tolist()))
    vocab = build_vocabulary(class_texts, include_class_names=include_class_names, classes=classes)
    text_emb = encoder.encode(list(vocab.texts))
    queries = {readable_name(c): c for c in classes}
    queries.update(extra_queries or {})
    out = Text2PatchEvaluation()
    for i, seed in enumerate(seeds):
        train, test = stratified_split(y, train_fraction, seed)
        model, hist = train_text2patch(x[train], y[train].tolist(), vocab, text_emb, replace(config, seed=seed),
                                       text_model=encoder.name)
        results = evaluate_queries(model, encoder, x[test], y[test], queries, k=k)
        out.results.append({r.query: r for r in results})
        out.seconds.append(hist.seconds)
        if progress is not None:
            progress((i + 1) / len(seeds), f"seed {seed} done")
    return out
