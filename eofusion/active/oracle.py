"""System validation: a simulated user (an oracle answering from ground truth) drives the loop.

For one class (one-vs-rest) and one random start, the oracle

1. labels ``n_initial_positive`` random positives and ``n_initial_negative`` random negatives;
2. runs a round (:func:`eofusion.active.round.run_round`) and evaluates it on the *whole pool*:
   predictions are ``SVM decision > 0``, scored with overall accuracy, balanced accuracy and the
   precision, recall and F1 of the positive class (:mod:`eofusion.evaluation`);
3. labels the round's query batch (at most ``batch_size`` items) truthfully and repeats, for
   ``n_rounds`` rounds.

The random-sampling baseline starts from the same labels and adds as many labels per round, drawn
uniformly among the unlabelled items, with the same SVM. Both are averaged over several starts
(seeds) and classes. :func:`compare_descriptors` runs the same protocol on several descriptor
matrices (e.g. ``fused`` / ``s1`` / ``s2``); :func:`write_json_report` and :func:`plot_accuracy`
save the outcome.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from eofusion.active.round import PreparedPool, RoundConfig, RoundResult, prepare_pool, run_round
from eofusion.active.seeding import COLD_STARTS, cold_start_queries
from eofusion.evaluation import balanced_accuracy, overall_accuracy, precision_recall_f1

__all__ = [
    "METRICS",
    "Method",
    "OracleConfig",
    "OracleReport",
    "compare_descriptors",
    "evaluate_predictions",
    "format_table",
    "plot_accuracy",
    "simulate",
    "simulate_class",
    "stratified_folds",
    "write_json_report",
]

Method = Literal["active", "random"]
ColdStartOption = Literal["random", "nearest", "mean", "kmeans"]
#: Seed entropy of the fold splits, apart from the starts' ``(seed, class index)``.
_FOLD_STREAM = 1_000_003
METRICS: tuple[str, ...] = ("overall_accuracy", "balanced_accuracy", "precision", "recall", "f1")


@dataclass(frozen=True)
class OracleConfig:
    """Protocol of the simulation.

    Attributes:
        n_initial_positive: Random positives labelled before the first round.
        n_initial_negative: Random negatives labelled before the first round.
        batch_size: Labels added per round (the query batch size, ``n_queries`` of the round).
        n_rounds: Rounds after the initial fit; the last model has
            ``n_initial_positive + n_initial_negative + n_rounds * batch_size`` labels.
        seeds: Random starts; results are averaged over them.
        round: Round configuration (its ``n_queries`` is replaced by ``batch_size``).
        methods: ``"active"`` (the round's query batch) and/or ``"random"`` (baseline).
        folds: ``0``: every model is scored on the whole pool it learned from (labelled items included: an
            optimistic figure, kept for comparison with earlier reports). ``k >= 2``: held out: the items are
            split in ``k`` folds stratified by class (one split per seed, shared by every class); for each
            fold the oracle learns on the other folds only and the fold's items are predicted by that model,
            so every item is scored by a model that never saw it, and the metrics are computed once over
            all those predictions.
        cold_start: How the active method's ``n_initial_negative`` first marks are chosen after the
            ``n_initial_positive`` random positives: ``"random"`` (random negatives, as the random baseline
            always starts) or a strategy of :func:`eofusion.active.seeding.cold_start_queries` (``"nearest"``,
            ``"mean"``, ``"kmeans"``): pool items asked about before any negative is known, labelled truthfully
            whatever they are.
    """

    n_initial_positive: int = 5
    n_initial_negative: int = 5
    batch_size: int = 10
    n_rounds: int = 3
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    round: RoundConfig = field(default_factory=RoundConfig)
    methods: tuple[Method, ...] = ("active", "random")
    folds: int = 0
    cold_start: ColdStartOption = "random"

    def __post_init__(self) -> None:
        if self.folds == 1 or self.folds < 0:
            raise ValueError(f"folds must be 0 (in-pool) or >= 2 (held out), got {self.folds}")
        if self.n_initial_positive < 1:
            raise ValueError("n_initial_positive must be >= 1 (the round needs a positive)")
        if self.n_initial_negative < 0 or self.batch_size < 0 or self.n_rounds < 0:
            raise ValueError("n_initial_negative, batch_size and n_rounds must be >= 0")
        if not self.seeds:
            raise ValueError("at least one seed is needed")
        if self.cold_start not in ("random", *COLD_STARTS):
            raise ValueError(f"unknown cold start {self.cold_start!r}")
        if not self.methods or any(m not in ("active", "random") for m in self.methods):
            raise ValueError(f"methods must be a non-empty subset of ('active', 'random'), got {self.methods}")


def evaluate_predictions(y_true: NDArray[np.bool_], predicted: NDArray[np.bool_]) -> NDArray[np.float64]:
    """The :data:`METRICS` of binary predictions, positive class = True.

    Args:
        y_true: ``(n,)`` ground truth.
        predicted: ``(n,)`` predictions.

    Returns:
        ``(5,)``: overall accuracy, balanced accuracy, precision, recall, F1 (0 where undefined).
    """
    prf = precision_recall_f1(y_true, predicted, labels=[True], zero_division=0.0)
    return np.array(
        [
            overall_accuracy(y_true, predicted),
            balanced_accuracy(y_true, predicted),
            prf.precision[0],
            prf.recall[0],
            prf.f1[0],
        ],
        dtype=np.float64,
    )


def _as_pool(descriptors: ArrayLike | PreparedPool, cfg: RoundConfig) -> PreparedPool:
    return descriptors if isinstance(descriptors, PreparedPool) else prepare_pool(descriptors, cfg)


def oracle_rounds(pool: PreparedPool, y: NDArray[np.bool_], labelled: NDArray[np.bool_], round_cfg: RoundConfig,
                  n_rounds: int, batch_size: int, method: str, rng: np.random.Generator
                  ) -> Iterator[tuple[int, RoundResult, NDArray[np.intp]]]:
    """The oracle's rounds: fit on the labelled items, yield, then label the next batch.

    Args:
        pool: The prepared pool.
        y: ``(n,)`` the oracle's answers (True = positive).
        labelled: ``(n,)`` items labelled so far (the initial draw); updated in place.
        round_cfg: Round settings (``n_queries`` = the batch size).
        n_rounds: Rounds after the initial fit.
        batch_size: Labels added per round by the random baseline.
        method: ``"active"`` labels the round's queries; anything else a random batch drawn with ``rng``.
        rng: Random stream of the baseline.

    Yields:
        ``(round, result, labelled indices)`` for the initial fit (round 0) and each round.
    """
    for r in range(n_rounds + 1):
        lab = np.flatnonzero(labelled)
        res = run_round(pool, lab[y[lab]], lab[~y[lab]], round_cfg)
        yield r, res, lab
        if r == n_rounds:
            return
        if method == "active":
            picks = np.asarray(res.query_indices)
        else:
            unlabelled = np.flatnonzero(~labelled)
            picks = rng.choice(unlabelled, min(batch_size, unlabelled.size), replace=False)
        labelled[picks] = True


def stratified_folds(labels: ArrayLike, k: int, seed: int | Sequence[int]) -> NDArray[np.intp]:
    """The fold (``0 .. k-1``) of every item: each class's items shuffled and dealt round-robin.

    Args:
        labels: ``(n,)`` class of every item.
        k: Number of folds (>= 2).
        seed: Seed (or seed entropy) of the shuffle.

    Returns:
        ``(n,)`` fold indices; every fold holds ``floor`` or ``ceil`` of ``n_c / k`` items of each class ``c``.
    """
    y = np.asarray(labels).astype(str).reshape(-1)
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    fold = np.empty(y.shape[0], dtype=np.intp)
    offset = 0
    for c in sorted(set(y.tolist())):
        members = rng.permutation(np.flatnonzero(y == c))
        # The class's first fold follows the previous class's last one, so small classes do not all
        # crowd fold 0.
        fold[members] = (np.arange(members.size) + offset) % k
        offset = (offset + members.size) % k
    return fold


def simulate_class(
    descriptors: ArrayLike | PreparedPool,
    y_true: ArrayLike,
    seed: int | Sequence[int],
    config: OracleConfig | None = None,
    fold_of: NDArray[np.intp] | None = None,
) -> dict[str, tuple[NDArray[np.float64], NDArray[np.int64]]]:
    """Simulate one start for one binary problem.

    Args:
        descriptors: ``(n, d)`` pool descriptors, or a pool prepared for ``config.round``.
        y_true: ``(n,)`` booleans, True for the positive class.
        seed: Seed (or seed entropy, e.g. ``(seed, class_index)``) of the initial draw and of the
            random baseline.
        config: The protocol; defaults to ``OracleConfig()``.
        fold_of: ``(n,)`` fold of every item (:func:`stratified_folds`): held-out evaluation, each fold
            predicted by the models of an oracle that learned on the other folds. ``None``: the in-pool
            evaluation (every model scored on the whole pool).

    Returns:
        For each method, ``(scores, n_labels)``: ``(n_rounds + 1, len(METRICS))`` metrics after
        the initial fit and each round, and the number of labels behind each model (the mean over folds).

    Raises:
        ValueError: If ``y_true`` does not match the pool, has no positive, or a fold's complement has none.
    """
    cfg = config or OracleConfig()
    round_cfg = dataclasses.replace(cfg.round, n_queries=cfg.batch_size, n_top=0)
    pool = _as_pool(descriptors, round_cfg)
    y = np.asarray(y_true, dtype=bool).reshape(-1)
    if y.shape[0] != pool.n:
        raise ValueError(f"{y.shape[0]} labels for a pool of {pool.n} items")
    if not y.any():
        raise ValueError("the class has no positive item in the pool")
    everything = np.arange(pool.n)
    if fold_of is None:
        splits = [(everything, everything)]
    else:
        fold_of = np.asarray(fold_of).reshape(-1)
        if fold_of.shape[0] != pool.n:
            raise ValueError(f"{fold_of.shape[0]} fold indices for a pool of {pool.n} items")
        splits = [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in np.unique(fold_of)]

    init_ss, random_ss = np.random.SeedSequence(seed).spawn(2)
    init_rng = np.random.default_rng(init_ss)
    starts = []
    for learn, _ in splits:
        local = y[learn]
        pos_all, neg_all = np.flatnonzero(local), np.flatnonzero(~local)
        if pos_all.size == 0:
            raise ValueError("a fold's complement has no positive item: use fewer folds for this class")
        starts.append((init_rng.choice(pos_all, min(cfg.n_initial_positive, pos_all.size), replace=False),
                       init_rng.choice(neg_all, min(cfg.n_initial_negative, neg_all.size), replace=False)))

    out: dict[str, tuple[NDArray[np.float64], NDArray[np.int64]]] = {}
    for method in cfg.methods:
        pick_rng = np.random.default_rng(random_ss)  # same stream for every method: reproducible
        predicted = np.zeros((cfg.n_rounds + 1, pool.n), dtype=bool)
        n_labels = np.zeros(cfg.n_rounds + 1, dtype=np.float64)
        for fi, ((learn, judge), (pos0, neg0)) in enumerate(zip(splits, starts, strict=True)):
            sub = pool if learn.size == pool.n else PreparedPool(pool.features[learn], pool.feature_map,
                                                                 pool.sq_norms[learn])
            labelled = np.zeros(sub.n, dtype=bool)
            labelled[pos0] = True
            if method == "active" and cfg.cold_start != "random":
                kseed = int(np.random.SeedSequence(seed).generate_state(1)[0]) + fi
                labelled[cold_start_queries(cfg.cold_start, sub.features, pos0, cfg.n_initial_negative, kseed,
                                            round_cfg.candidate_factor)] = True
            else:
                labelled[neg0] = True
            held = None if judge is everything else PreparedPool(pool.features[judge], pool.feature_map,
                                                                  pool.sq_norms[judge])
            for r, res, lab in oracle_rounds(sub, y[learn], labelled, round_cfg, cfg.n_rounds, cfg.batch_size,
                                             method, pick_rng):
                # In pool: the whole pool, labelled items included, as a user would see the map. Held
                # out: the fold's items, which this oracle never saw.
                scores = res.scores if held is None else res.model.score_features(held.features, held.sq_norms)
                predicted[r, judge] = scores > 0
                n_labels[r] += lab.size / len(splits)
        metrics = np.stack([evaluate_predictions(y, predicted[r]) for r in range(cfg.n_rounds + 1)])
        out[method] = (metrics, np.rint(n_labels).astype(np.int64))
    return out


@dataclass(frozen=True, eq=False)
class OracleReport:
    """Outcome of :func:`simulate` for one descriptor.

    Attributes:
        name: Descriptor name.
        classes: Classes simulated (one-vs-rest each).
        class_sizes: Positives of each class in the pool.
        config: The protocol.
        scores: Per method, ``(n_classes, n_seeds, n_rounds + 1, len(METRICS))``.
        n_labels: Per method, ``(n_classes, n_seeds, n_rounds + 1)`` labels behind each model.
        seconds: Wall time of the simulation.
        folds: ``(n_seeds, n)`` fold of every item per seed (held-out protocol), ``None`` in pool.
    """

    name: str
    classes: tuple[str, ...]
    class_sizes: tuple[int, ...]
    config: OracleConfig
    scores: dict[str, NDArray[np.float64]]
    n_labels: dict[str, NDArray[np.int64]]
    seconds: float
    folds: NDArray[np.intp] | None = None

    @property
    def protocol(self) -> str:
        """How the models were scored, in words."""
        if self.folds is None:
            return "in pool: each model scored on the items it learned from (optimistic)"
        return (f"held out: stratified {self.config.folds}-fold, each fold predicted by models that learned on "
                "the other folds only")

    def metric(self, method: str, metric: str) -> NDArray[np.float64]:
        """``(n_classes, n_seeds, n_rounds + 1)`` values of one metric for one method.

        Raises:
            KeyError: On an unknown method or metric.
        """
        if metric not in METRICS:
            raise KeyError(f"unknown metric {metric!r}; expected one of {METRICS}")
        return self.scores[method][..., METRICS.index(metric)]

    def mean(self, method: str, metric: str) -> NDArray[np.float64]:
        """``(n_rounds + 1,)`` mean over classes and seeds."""
        return self.metric(method, metric).mean(axis=(0, 1))

    def seed_std(self, method: str, metric: str) -> NDArray[np.float64]:
        """``(n_rounds + 1,)`` standard deviation over seeds of the class-averaged metric."""
        return self.metric(method, metric).mean(axis=0).std(axis=0)

    def per_class(self, method: str, metric: str) -> NDArray[np.float64]:
        """``(n_classes, n_rounds + 1)`` mean over seeds."""
        return self.metric(method, metric).mean(axis=1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary: configuration, means, seed spread and per-class curves."""
        cfg = dataclasses.asdict(self.config)
        methods: dict[str, Any] = {}
        for method in self.scores:
            methods[method] = {
                "mean": {m: self.mean(method, m).tolist() for m in METRICS},
                "seed_std": {m: self.seed_std(method, m).tolist() for m in METRICS},
                "per_class": {
                    c: {m: self.per_class(method, m)[i].tolist() for m in METRICS} for i, c in enumerate(self.classes)
                },
                "n_labels": self.n_labels[method].mean(axis=(0, 1)).tolist(),
            }
        return {
            "descriptor": self.name,
            "classes": list(self.classes),
            "class_sizes": list(self.class_sizes),
            "rounds": list(range(self.config.n_rounds + 1)),
            "metrics": list(METRICS),
            "config": cfg,
            "methods": methods,
            "seconds": self.seconds,
            "protocol": self.protocol,
            "folds": None if self.folds is None else self.folds.tolist(),
        }


def simulate(
    descriptors: ArrayLike | PreparedPool,
    labels: ArrayLike,
    classes: Sequence[str] | None = None,
    config: OracleConfig | None = None,
    name: str = "descriptor",
) -> OracleReport:
    """Run the oracle for several classes (one-vs-rest) and seeds.

    Args:
        descriptors: ``(n, d)`` pool descriptors (or a pool prepared for ``config.round``).
        labels: ``(n,)`` ground-truth class of every pool item.
        classes: Classes to simulate; default: all, sorted.
        config: The protocol; defaults to ``OracleConfig()``.
        name: Name of the descriptor in the report.

    Returns:
        The report.

    Raises:
        ValueError: On a label array that does not match the pool or a class absent from it.
    """
    cfg = config or OracleConfig()
    t0 = time.perf_counter()
    pool = _as_pool(descriptors, cfg.round)
    y = np.asarray(labels).astype(str)
    if y.shape != (pool.n,):
        raise ValueError(f"labels of shape {y.shape} for a pool of {pool.n} items")
    names = tuple(str(c) for c in (sorted(set(y.tolist())) if classes is None else classes))
    sizes = tuple(int((y == c).sum()) for c in names)
    missing = [c for c, s in zip(names, sizes, strict=True) if s == 0]
    if missing:
        raise ValueError(f"classes absent from the pool: {missing}")
    shape = (len(names), len(cfg.seeds), cfg.n_rounds + 1)
    scores: dict[str, NDArray[np.float64]] = {m: np.zeros((*shape, len(METRICS))) for m in cfg.methods}
    n_labels: dict[str, NDArray[np.int64]] = {m: np.zeros(shape, dtype=np.int64) for m in cfg.methods}
    # One split per seed, shared by every class (its own seed stream: the starts do not depend on it).
    folds = np.stack([stratified_folds(y, cfg.folds, (seed, _FOLD_STREAM)) for seed in cfg.seeds]) \
        if cfg.folds else None
    for ci, c in enumerate(names):
        for si, seed in enumerate(cfg.seeds):
            # The class index enters the seed so classes do not share one sequence of draws.
            runs = simulate_class(pool, y == c, (seed, ci), cfg, None if folds is None else folds[si])
            for m, (sc, nl) in runs.items():
                scores[m][ci, si] = sc
                n_labels[m][ci, si] = nl
    return OracleReport(
        name=name,
        classes=names,
        class_sizes=sizes,
        config=cfg,
        scores=scores,
        n_labels=n_labels,
        seconds=time.perf_counter() - t0,
        folds=folds,
    )


def compare_descriptors(
    descriptors: Mapping[str, ArrayLike | PreparedPool],
    labels: ArrayLike,
    classes: Sequence[str] | None = None,
    config: OracleConfig | Mapping[str, OracleConfig] | None = None,
) -> dict[str, OracleReport]:
    """Run the same protocol on several descriptor matrices of the same pool.

    Args:
        descriptors: Name to ``(n, d)`` matrix, e.g. ``{"fused": ..., "s1": ..., "s2": ...}``.
        labels: ``(n,)`` ground truth shared by all matrices.
        classes: Classes to simulate; default: all.
        config: One protocol for all, or one per name (e.g. a different kernel per descriptor);
            seeds should be equal so the starts are the same.

    Returns:
        Name to report, in the order of ``descriptors``.

    Raises:
        KeyError: If a per-name configuration is missing.
    """
    out: dict[str, OracleReport] = {}
    for name, matrix in descriptors.items():
        cfg = config.get(name) if isinstance(config, Mapping) else config
        if isinstance(config, Mapping) and cfg is None:
            raise KeyError(f"no oracle configuration for descriptor {name!r}")
        out[name] = simulate(matrix, labels, classes, cfg, name=name)
    return out


def _reports(reports: OracleReport | Mapping[str, OracleReport]) -> dict[str, OracleReport]:
    return {reports.name: reports} if isinstance(reports, OracleReport) else dict(reports)


def write_json_report(reports: OracleReport | Mapping[str, OracleReport], path: Path | str,
                      items: Sequence[str] | None = None) -> Path:
    """Write one or several reports as JSON (``{"reports": {name: report.to_dict()}}``).

    Args:
        reports: A report or name-to-report mapping.
        path: Output file; parent folders are created.
        items: The pool's item ids, in pool order: written as ``items``, so the folds (item indices) name
            the items each model never saw.

    Returns:
        The path written.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {"reports": {name: rep.to_dict() for name, rep in _reports(reports).items()}}
    if items is not None:
        payload["items"] = list(items)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    return out


def plot_accuracy(
    reports: OracleReport | Mapping[str, OracleReport],
    path: Path | str,
    metric: str = "balanced_accuracy",
) -> Path:
    """Plot a metric per number of labels, active (solid) vs random (dashed), one colour per descriptor.

    Uses matplotlib's Agg canvas directly, so it never changes the global backend.

    Args:
        reports: A report or name-to-report mapping.
        path: Output PNG; parent folders are created.
        metric: One of :data:`METRICS`.

    Returns:
        The path written.

    Raises:
        KeyError: On an unknown metric.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if metric not in METRICS:
        raise KeyError(f"unknown metric {metric!r}; expected one of {METRICS}")
    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, rep) in enumerate(_reports(reports).items()):
        colour = f"C{i}"
        for method in rep.scores:
            x = rep.n_labels[method].mean(axis=(0, 1))
            y = rep.mean(method, metric)
            s = rep.seed_std(method, metric)
            style = "-" if method == "active" else "--"
            ax.plot(x, y, style, color=colour, marker="o", label=f"{name} {method}")
            ax.fill_between(x, y - s, y + s, color=colour, alpha=0.12 if method == "active" else 0.06)
    ax.set_xlabel("labels")
    ax.set_ylabel(f"{metric.replace('_', ' ')} (mean over classes)")
    ax.set_title("Oracle simulation: active vs random sampling")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out


def format_table(report: OracleReport, metrics: Sequence[str] = ("balanced_accuracy", "f1")) -> str:
    """Markdown table: per class and mean, each metric after each round, ``active / random``.

    Args:
        report: The report.
        metrics: Metrics to show.

    Returns:
        The table text.
    """
    methods = list(report.scores)
    labels_per_round = report.n_labels[methods[0]].mean(axis=(0, 1))
    short = {"balanced_accuracy": "BA", "overall_accuracy": "OA", "precision": "P", "recall": "R", "f1": "F1"}
    head = ["class", "n+"]
    for m in metrics:
        head += [f"{short[m]} r{r} ({labels_per_round[r]:.0f})" for r in range(report.config.n_rounds + 1)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(values: dict[str, float]) -> str:
        return " / ".join(f"{values[m]:.3f}" for m in methods)

    for i, c in enumerate(report.classes):
        row = [c, str(report.class_sizes[i])]
        for m in metrics:
            row += [cell({k: report.per_class(k, m)[i, r] for k in methods}) for r in range(report.config.n_rounds + 1)]
        lines.append("| " + " | ".join(row) + " |")
    row = ["**mean**", str(sum(report.class_sizes))]
    for m in metrics:
        row += [
            "**" + cell({k: report.mean(k, m)[r] for k in methods}) + "**" for r in range(report.config.n_rounds + 1)
        ]
    lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
