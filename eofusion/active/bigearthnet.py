"""A small, honest oracle protocol on co-registered S1/S2 pairs: fused vs S1-only vs S2-only.

Six BigEarthNet pairs are far too few for the EuroSAT protocol (a pool of single-label patches),
so each 120 x 120 px pair is cut into sub-windows (30 x 30 px: 16 per pair), every window is
described with the stored descriptors (``s1`` WLD of VV, ``s2`` spectral + NIR texture, ``fused``
S1 WLD + S2 spectral) and labelled with its source patch's CORINE labels (multi-label; a window
may miss a class its patch has, so the labels are noisy by construction).

Evaluation is leave-one-pair-out, one-vs-rest per label present in at least ``min_pairs`` pairs:
the oracle active learning (:func:`eofusion.active.run_round` with the round's query batch, or
random picks as the baseline) runs on the windows of the other pairs, and the model after each
round predicts the held-out pair's windows. The held-out predictions of all folds are pooled
and scored with balanced accuracy and F1, so no window is ever predicted by a model that saw a
window of its own patch. Windows of one patch are still correlated and six scenes are not a
sample of the world: the figures compare descriptors on these scenes, nothing more.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from eofusion.active.oracle import METRICS, OracleConfig, evaluate_predictions, oracle_rounds, simulate_class
from eofusion.active.round import RoundConfig, prepare_pool, score_pool

Method = Literal["active", "random"]

__all__ = [
    "BenProtocolConfig",
    "BenResult",
    "PairWindows",
    "cut_windows",
    "evaluated_labels",
    "held_out_predictions",
    "in_pool",
    "leave_one_pair_out",
    "summary_rows",
    "window_descriptors",
]


@dataclass(frozen=True, eq=False)
class PairWindows:
    """Sub-windows of co-registered pairs.

    Attributes:
        s2: ``(n, bands, size, size)`` Sentinel-2 digital numbers.
        s1: ``(n, pols, size, size)`` Sentinel-1 linear intensity.
        pair: ``(n,)`` index of the source pair of every window.
        labels: Per window, the source patch's labels.
        pair_ids: Id of every pair.
    """

    s2: NDArray[np.uint16]
    s1: NDArray[np.float32]
    pair: NDArray[np.int64]
    labels: tuple[frozenset[str], ...]
    pair_ids: tuple[str, ...]

    @property
    def n(self) -> int:
        """Number of windows."""
        return int(self.pair.shape[0])


def cut_windows(
    pairs: Sequence[tuple[str, NDArray[np.generic], NDArray[np.generic], Sequence[str]]], size: int = 30
) -> PairWindows:
    """Cut every pair into non-overlapping ``size`` x ``size`` windows (a partial border is dropped).

    Args:
        pairs: ``(id, s2 (bands, h, w), s1 (pols, h, w), labels)`` per pair, S1 and S2 on one grid.
        size: Window side in pixels.

    Returns:
        The windows, in pair order, row-major within a pair.

    Raises:
        ValueError: If a pair's S1 and S2 grids differ or the window is larger than a pair.
    """
    s2w, s1w, pair, labels, ids = [], [], [], [], []
    for k, (pid, s2, s1, labs) in enumerate(pairs):
        if s2.shape[1:] != s1.shape[1:]:
            raise ValueError(f"pair {pid}: S2 grid {s2.shape[1:]} and S1 grid {s1.shape[1:]} differ")
        h, w = s2.shape[1:]
        if size > min(h, w):
            raise ValueError(f"window {size} px is larger than pair {pid} ({h} x {w})")
        for r in range(0, h - size + 1, size):
            for c in range(0, w - size + 1, size):
                s2w.append(s2[:, r : r + size, c : c + size])
                s1w.append(s1[:, r : r + size, c : c + size])
                pair.append(k)
                labels.append(frozenset(labs))
        ids.append(pid)
    return PairWindows(
        s2=np.stack(s2w).astype(np.uint16),
        s1=np.stack(s1w).astype(np.float32),
        pair=np.asarray(pair, dtype=np.int64),
        labels=tuple(labels),
        pair_ids=tuple(ids),
    )


def window_descriptors(windows: PairWindows) -> dict[str, NDArray[np.float32]]:
    """The stored descriptors of every window, computed as archive ingest computes them.

    Returns:
        ``fused`` (S1 WLD of VV + S2 spectral, half weight each, 160-d), ``s1`` (WLD of VV, 64-d),
        ``s2`` (the stored S2 descriptor: spectral + NIR WLD texture, 160-d) and ``s2-spectral``
        (the 96-d S2 half of ``fused``, to tell what S1 adds from what the texture adds).
    """
    # Imported here: the pipeline pulls in rasterio, which the rest of eofusion.active does not need.
    from eofusion.features import fuse_vectors
    from eofusion.features.spectral import s2_dn_to_reflectance
    from eofusion.pipeline.scene import S1_DESCRIPTOR, S2_DESCRIPTOR, S2_SPECTRAL

    refl = s2_dn_to_reflectance(windows.s2, nodata=0)
    s1 = S1_DESCRIPTOR.batch(windows.s1[:, :1])
    spectral = S2_SPECTRAL.batch(refl)
    return {
        "fused": fuse_vectors(s1, spectral),
        "s1": np.asarray(s1, dtype=np.float32),
        "s2": np.asarray(S2_DESCRIPTOR.batch(refl), dtype=np.float32),
        "s2-spectral": np.asarray(spectral, dtype=np.float32),
    }


@dataclass(frozen=True)
class BenProtocolConfig:
    """The leave-one-pair-out oracle protocol.

    Attributes:
        min_pairs: A label is evaluated when at least this many pairs carry it (2: every fold
            that holds one of them out still trains with positives of another scene).
        n_initial_positive: Random positives labelled before the first round.
        n_initial_negative: Random negatives labelled before the first round.
        batch_size: Labels added per round.
        n_rounds: Rounds after the initial fit.
        seeds: Random starts (the same starts for every descriptor).
        methods: ``"active"`` (the round's query batch) and/or ``"random"``.
        round: Round configuration (kernel, C); its ``n_queries`` is replaced by ``batch_size``.
    """

    min_pairs: int = 2
    n_initial_positive: int = 3
    n_initial_negative: int = 3
    batch_size: int = 4
    n_rounds: int = 3
    seeds: tuple[int, ...] = tuple(range(10))
    methods: tuple[Method, ...] = ("active", "random")
    round: RoundConfig = field(default_factory=RoundConfig)

    def __post_init__(self) -> None:
        if self.min_pairs < 2:
            raise ValueError("min_pairs must be >= 2 (a held-out pair needs positives elsewhere)")
        if self.n_initial_positive < 1 or self.n_initial_negative < 1:
            raise ValueError("the initial draw needs at least one positive and one negative")
        if self.batch_size < 0 or self.n_rounds < 0 or not self.seeds:
            raise ValueError("batch_size and n_rounds must be >= 0 and seeds non-empty")


@dataclass(frozen=True, eq=False)
class BenResult:
    """Scores of one descriptor: ``scores[method]`` is ``(labels, seeds, rounds + 1, METRICS)``.

    Held-out predictions of all folds are pooled before scoring (one value per label, seed, round).
    """

    descriptor: str
    labels: tuple[str, ...]
    positives: tuple[int, ...]  # windows carrying each label
    scores: dict[str, NDArray[np.float64]]
    n_labels: NDArray[np.int64]  # (rounds + 1,) labels behind each model (mean over folds)

    def final(self, method: str, metric: str) -> NDArray[np.float64]:
        """``(labels, seeds)`` values of a metric after the last round."""
        return self.scores[method][:, :, -1, METRICS.index(metric)]


def evaluated_labels(windows: PairWindows, min_pairs: int) -> list[str]:
    """Labels carried by at least ``min_pairs`` pairs and absent from at least one, sorted."""
    n_pairs = len(windows.pair_ids)
    first = [int(np.flatnonzero(windows.pair == k)[0]) for k in range(n_pairs)]
    per_pair = [windows.labels[i] for i in first]
    counts: dict[str, int] = {}
    for labs in per_pair:
        for lab in labs:
            counts[lab] = counts.get(lab, 0) + 1
    return sorted(lab for lab, c in counts.items() if min_pairs <= c < n_pairs)


def _fold(
    train_x: NDArray[np.float32],
    train_y: NDArray[np.bool_],
    test_x: NDArray[np.float32],
    seed: tuple[int, ...],
    cfg: BenProtocolConfig,
    method: Method,
) -> tuple[NDArray[np.bool_], NDArray[np.int64]]:
    """Oracle rounds on one training pool; ``(rounds + 1, n_test)`` held-out predictions and label counts."""
    round_cfg = dataclasses.replace(cfg.round, n_queries=cfg.batch_size, n_top=0)
    pool = prepare_pool(train_x, round_cfg)
    test = prepare_pool(test_x, round_cfg)
    pos_all, neg_all = np.flatnonzero(train_y), np.flatnonzero(~train_y)
    init_ss, random_ss = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(init_ss)
    labelled = np.zeros(pool.n, dtype=bool)
    labelled[rng.choice(pos_all, min(cfg.n_initial_positive, pos_all.size), replace=False)] = True
    labelled[rng.choice(neg_all, min(cfg.n_initial_negative, neg_all.size), replace=False)] = True
    pick_rng = np.random.default_rng(random_ss)
    preds = np.zeros((cfg.n_rounds + 1, test.n), dtype=bool)
    counts = np.zeros(cfg.n_rounds + 1, dtype=np.int64)
    for r, res, lab in oracle_rounds(pool, train_y, labelled, round_cfg, cfg.n_rounds, cfg.batch_size, method,
                                     pick_rng):
        preds[r] = score_pool(res.model, test) > 0
        counts[r] = lab.size
    return preds, counts


def held_out_predictions(
    x: NDArray[np.float32],
    y: NDArray[np.bool_],
    pair: NDArray[np.int64],
    seed: tuple[int, ...],
    cfg: BenProtocolConfig,
    method: Method,
) -> tuple[NDArray[np.bool_], NDArray[np.int64]]:
    """Every window predicted by the models of the fold that holds its pair out.

    Args:
        x: ``(n, d)`` descriptors.
        y: ``(n,)`` True for the positive class.
        pair: ``(n,)`` pair index of every window.
        seed: Seed entropy; the fold index is appended (descriptors and methods share the starts).
        cfg: The protocol.
        method: ``"active"`` or ``"random"``.

    Returns:
        ``(rounds + 1, n)`` predictions after each round, and ``(rounds + 1,)`` label counts
        (mean over folds, rounded).
    """
    pred = np.zeros((cfg.n_rounds + 1, x.shape[0]), dtype=bool)
    counts = np.zeros(cfg.n_rounds + 1, dtype=np.int64)
    folds = np.unique(pair)
    for k in folds.tolist():
        test = pair == k
        p, c = _fold(x[~test], y[~test], x[test], (*seed, k), cfg, method)
        pred[:, test] = p
        counts += c
    return pred, np.rint(counts / folds.size).astype(np.int64)


def leave_one_pair_out(
    descriptors: Mapping[str, NDArray[np.float32]], windows: PairWindows, config: BenProtocolConfig | None = None
) -> dict[str, BenResult]:
    """Run the leave-one-pair-out oracle for every descriptor on the same windows and starts.

    Args:
        descriptors: Name to ``(windows.n, d)`` matrix.
        windows: The windows (pair index and labels).
        config: The protocol.

    Returns:
        Name to result, in the order of ``descriptors``.

    Raises:
        ValueError: If a matrix does not have one row per window, or no label qualifies.
    """
    cfg = config or BenProtocolConfig()
    labels = evaluated_labels(windows, cfg.min_pairs)
    if not labels:
        raise ValueError(f"no label is carried by at least {cfg.min_pairs} pairs (and not by all)")
    out: dict[str, BenResult] = {}
    for name, matrix in descriptors.items():
        x = np.asarray(matrix, dtype=np.float32)
        if x.shape[0] != windows.n:
            raise ValueError(f"{name}: {x.shape[0]} rows for {windows.n} windows")
        shape = (len(labels), len(cfg.seeds), cfg.n_rounds + 1, len(METRICS))
        scores: dict[str, NDArray[np.float64]] = {m: np.zeros(shape) for m in cfg.methods}
        counts = np.zeros(cfg.n_rounds + 1, dtype=np.float64)
        for li, label in enumerate(labels):
            y = np.asarray([label in labs for labs in windows.labels])
            for si, seed in enumerate(cfg.seeds):
                for method in cfg.methods:
                    pred, c = held_out_predictions(x, y, windows.pair, (seed, li), cfg, method)
                    counts += c
                    for r in range(cfg.n_rounds + 1):
                        scores[method][li, si, r] = evaluate_predictions(y, pred[r])
        runs = len(labels) * len(cfg.seeds) * len(cfg.methods)
        out[name] = BenResult(
            descriptor=name,
            labels=tuple(labels),
            positives=tuple(int(sum(lab in labs for labs in windows.labels)) for lab in labels),
            scores=scores,
            n_labels=np.rint(counts / runs).astype(np.int64),
        )
    return out


def in_pool(
    descriptors: Mapping[str, NDArray[np.float32]], windows: PairWindows, config: BenProtocolConfig | None = None
) -> dict[str, BenResult]:
    """The EuroSAT protocol on all windows: the pool is every window, evaluated on the pool itself.

    This is how a user works (the map is the pool being labelled) but windows of a labelled
    patch are scored too, so it flatters every descriptor; compare with :func:`leave_one_pair_out`.
    """
    cfg = config or BenProtocolConfig()
    labels = evaluated_labels(windows, cfg.min_pairs)
    if not labels:
        raise ValueError(f"no label is carried by at least {cfg.min_pairs} pairs (and not by all)")
    oracle = OracleConfig(
        n_initial_positive=cfg.n_initial_positive,
        n_initial_negative=cfg.n_initial_negative,
        batch_size=cfg.batch_size,
        n_rounds=cfg.n_rounds,
        seeds=cfg.seeds,
        round=cfg.round,
        methods=cfg.methods,
    )
    out: dict[str, BenResult] = {}
    for name, matrix in descriptors.items():
        pool = prepare_pool(np.asarray(matrix, dtype=np.float32), cfg.round)
        shape = (len(labels), len(cfg.seeds), cfg.n_rounds + 1, len(METRICS))
        scores: dict[str, NDArray[np.float64]] = {m: np.zeros(shape) for m in cfg.methods}
        n_labels = np.zeros(cfg.n_rounds + 1, dtype=np.int64)
        for li, label in enumerate(labels):
            y = np.asarray([label in labs for labs in windows.labels])
            for si, seed in enumerate(cfg.seeds):
                for method, (sc, nl) in simulate_class(pool, y, (seed, li), oracle).items():
                    scores[method][li, si] = sc
                    n_labels = nl
        out[name] = BenResult(
            descriptor=name,
            labels=tuple(labels),
            positives=tuple(int(sum(lab in labs for labs in windows.labels)) for lab in labels),
            scores=scores,
            n_labels=n_labels,
        )
    return out


def summary_rows(results: Mapping[str, BenResult], method: str = "active") -> list[dict[str, float | str]]:
    """One row per descriptor: balanced accuracy and F1 after the last round, mean over labels and seeds.

    ``*_sd`` is the standard deviation over seeds of the label-mean (how much the starts matter).
    """
    rows: list[dict[str, float | str]] = []
    for name, res in results.items():
        row: dict[str, float | str] = {"descriptor": name, "method": method}
        for metric in ("balanced_accuracy", "f1"):
            v = res.final(method, metric)  # (labels, seeds)
            row[metric] = float(v.mean())
            row[f"{metric}_sd"] = float(v.mean(axis=0).std())
        rows.append(row)
    return rows
