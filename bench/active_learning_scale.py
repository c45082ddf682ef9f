"""Round latency at archive scale: 340,587 descriptors of the real dimension, 100 labels.

Descriptors are derived from the real EuroSAT-MS patches, not drawn uniformly: every 64 x 64
patch gives 25 real 32 x 32 windows (stride 8), described with the real descriptor (13-band
spectral histograms + NDVI/NDWI, 240-d; ``--descriptor fused`` adds the NIR WLD texture, 304-d).
The 5,400 real window descriptors are then mixed pairwise, ``w * a + (1 - w) * b``: a convex mix
of two histograms is exactly the histogram of the union of their pixels (weighted), i.e. a patch
straddling two places. 80 % of the pairs are taken within one class, 20 % across classes; an
item's class is the class of its larger part.

Each round has 100 labels (positives of one class + negatives, redrawn every round) and measures

* ours: ``run_round`` on the pool prepared once (Hellinger map): SVM fit + scoring of the whole
  pool + top-100 + query batch of 10 (diverse among the 50 nearest the boundary);
* baseline, interleaved in the same run: scikit-learn ``SVC(kernel="rbf")`` fit on the raw
  descriptors + ``decision_function`` over the whole pool.

Prints p50/p95 per round, the ratio, the one-time map cost, the balanced accuracy of both models
on the pool (their quality, not only their speed), ``nproc`` and memory.

    .venv/bin/python bench/active_learning_scale.py [--n 340587] [--rounds 30] [--baseline-rounds 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from sklearn.svm import SVC

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eofusion.active import RoundConfig, prepare_pool, run_round  # noqa: E402
from eofusion.active.eurosat import load_eurosat_ms, nir_texture_descriptors, spectral_descriptors  # noqa: E402
from eofusion.evaluation import balanced_accuracy  # noqa: E402
from eofusion.features import fuse_vectors  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "eurosat-ms"


def window_descriptors(
    descriptor: str, size: int = 32, stride: int = 8
) -> tuple[NDArray[np.float32], NDArray[np.str_]]:
    """Real descriptors of all ``size`` x ``size`` windows of the EuroSAT patches, with their class."""
    sample = load_eurosat_ms(DATA)
    _, _, h, w = sample.patches.shape
    offsets = [(r, c) for r in range(0, h - size + 1, stride) for c in range(0, w - size + 1, stride)]
    vecs, labels = [], []
    for patch, label in zip(sample.patches, sample.labels, strict=True):
        windows = np.stack([patch[:, r : r + size, c : c + size] for r, c in offsets])
        spec = spectral_descriptors(windows)
        vecs.append(spec if descriptor == "spectral" else fuse_vectors(nir_texture_descriptors(windows), spec, 0.5))
        labels += [label] * len(offsets)
    return np.concatenate(vecs), np.asarray(labels)


def synthesize(
    real: NDArray[np.float32], labels: NDArray[np.str_], n: int, seed: int = 0
) -> tuple[NDArray[np.float32], NDArray[np.str_]]:
    """``n`` convex mixes of two real descriptors (80 % same class), float32, with dominant class."""
    rng = np.random.default_rng(seed)
    classes, codes = np.unique(labels, return_inverse=True)
    by_class = [np.flatnonzero(codes == k) for k in range(len(classes))]
    a = rng.integers(0, real.shape[0], n)
    b = rng.integers(0, real.shape[0], n)
    same = rng.random(n) < 0.8
    for k, members in enumerate(by_class):
        sel = same & (codes[a] == k)
        b[sel] = members[rng.integers(0, members.size, int(sel.sum()))]
    w = rng.uniform(0.0, 1.0, n).astype(np.float32)
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    step = 65536
    for s in range(0, n, step):
        e = min(s + step, n)
        out[s:e] = w[s:e, None] * real[a[s:e]] + (1.0 - w[s:e, None]) * real[b[s:e]]
    dominant = np.where(w >= 0.5, codes[a], codes[b])
    return out, classes[dominant]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def mem_total_gib() -> float:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=340_587, help="pool size")
    ap.add_argument("--labels", type=int, default=100, help="labels per round")
    ap.add_argument("--positive-class", default="SeaLake")
    ap.add_argument("--rounds", type=int, default=30, help="rounds of ours")
    ap.add_argument("--baseline-rounds", type=int, default=5, help="rounds of the SVC baseline (slow)")
    ap.add_argument("--descriptor", choices=("spectral", "fused"), default="spectral")
    args = ap.parse_args()

    nproc = len(os.sched_getaffinity(0))
    print(f"# machine: nproc={nproc}, MemTotal={mem_total_gib():.1f} GiB, numpy {np.__version__}")
    t0 = time.perf_counter()
    real, real_labels = window_descriptors(args.descriptor)
    pool_x, pool_y = synthesize(real, real_labels, args.n)
    print(
        f"pool: {pool_x.shape[0]:,} x {pool_x.shape[1]} float32 ({pool_x.nbytes / 2**20:.0f} MiB), mixed from "
        f"{real.shape[0]:,} real {args.descriptor} window descriptors in {time.perf_counter() - t0:.1f} s; "
        f"{(pool_y == args.positive_class).mean():.1%} {args.positive_class}"
    )

    cfg = RoundConfig()  # Hellinger, C=10, balanced, n_top=100, n_queries=10
    t = time.perf_counter()
    pool = prepare_pool(pool_x, cfg)
    map_s = time.perf_counter() - t
    print(f"one-time Hellinger map of the pool (prepare_pool): {map_s * 1000:.0f} ms")

    y_true = pool_y == args.positive_class
    pos_all, neg_all = np.flatnonzero(y_true), np.flatnonzero(~y_true)
    rng = np.random.default_rng(1)
    n_pos = max(1, args.labels // 5)

    def draw() -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        return (rng.choice(pos_all, n_pos, replace=False), rng.choice(neg_all, args.labels - n_pos, replace=False))

    run_round(pool, *draw(), cfg)  # warm-up (BLAS threads, page faults)
    ours: list[float] = []
    parts: list[tuple[float, float, float]] = []
    base: list[float] = []
    ours_ba: list[float] = []
    base_ba: list[float] = []
    n_sv: list[int] = []
    for i in range(args.rounds):
        pos, neg = draw()
        t = time.perf_counter()
        res = run_round(pool, pos, neg, cfg)
        ours.append(time.perf_counter() - t)
        m = res.metrics
        parts.append((m.fit_seconds, m.score_seconds, m.query_seconds))
        ours_ba.append(balanced_accuracy(y_true, res.scores > 0))
        if i < args.baseline_rounds:  # interleaved: same minute, same machine state
            idx = np.concatenate([pos, neg])
            t = time.perf_counter()
            svc = SVC(kernel="rbf", C=10.0, gamma="scale", class_weight="balanced")
            svc.fit(pool_x[idx], y_true[idx])
            dec = svc.decision_function(pool_x)
            base.append(time.perf_counter() - t)
            base_ba.append(balanced_accuracy(y_true, dec > 0))
            n_sv.append(int(svc.n_support_.sum()))
            print(
                f"  round {i}: ours {ours[-1] * 1000:.0f} ms, baseline {base[-1] * 1000:.0f} ms ({n_sv[-1]} SV)",
                flush=True,
            )

    p50, p95 = pct(ours, 50), pct(ours, 95)
    b50, b95 = pct(base, 50), pct(base, 95)
    fit, score, query = (statistics.median(p[k] for p in parts) for k in range(3))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("\n| method | rounds | p50 ms | p95 ms | balanced acc. on pool (median) |\n|---|---|---|---|---|")
    print(
        f"| ours: run_round, Hellinger + linear SVM, prepared pool | {len(ours)} | {p50 * 1000:.0f} | "
        f"{p95 * 1000:.0f} | {statistics.median(ours_ba):.3f} |"
    )
    print(
        f"| baseline: SVC(rbf) fit + decision_function | {len(base)} | {b50 * 1000:.0f} | {b95 * 1000:.0f} | "
        f"{statistics.median(base_ba):.3f} |"
    )
    print(
        f"\nratio baseline/ours at p50: {b50 / p50:.1f}x (goal >= 10x); ours p50 {p50 * 1000:.0f} ms (goal <= 250 ms)"
    )
    print(
        f"ours, median split: fit {fit * 1000:.1f} ms, score pool {score * 1000:.1f} ms, "
        f"top + queries {query * 1000:.1f} ms; baseline support vectors: median {statistics.median(n_sv):.0f}"
    )
    print(f"peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
