"""On the BigEarthNet pairs, fused against S1-only and S2-only (oracle active learning).

The six real co-registered S1/S2 pairs of the ``bigearthnet-common`` wheel (120 x 120 px, CORINE
labels) are cut into ``--window`` px sub-windows (30: 16 per pair, 96 in all), described with the
stored descriptors and labelled with their patch's labels. Protocols (``eofusion.active.bigearthnet``):

* leave-one-pair-out (the main figure): per label carried by >= 2 pairs, one-vs-rest, the oracle
  runs on the other five pairs' windows (3 + 3 random labels, then 3 rounds of 4 labels picked by
  the round's query batch, or at random) and the model after each round predicts the held-out
  pair's windows; held-out predictions of the six folds are pooled and scored;
* in-pool (the EuroSAT protocol): the pool is all 96 windows and is also the evaluation set.

    .venv/bin/python bench/active_learning_bigearthnet.py [--window 30] [--seeds 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deploy.demo_data import extract_bigearthnet  # noqa: E402
from eofusion.active.bigearthnet import (  # noqa: E402
    BenProtocolConfig,
    BenResult,
    PairWindows,
    cut_windows,
    in_pool,
    leave_one_pair_out,
    summary_rows,
    window_descriptors,
)
from eofusion.active.oracle import METRICS  # noqa: E402
from eofusion.readers.archives import read_bigearthnet  # noqa: E402


def load_windows(size: int, work: Path) -> PairWindows:
    """The real pairs of the wheel, cut into windows."""
    s1_root, s2_root = extract_bigearthnet(work)
    pairs = [(p.id, p.s2, p.s1, p.labels) for p in read_bigearthnet(s2_root, s1_root) if p.s1 is not None and
             p.s2 is not None]
    return cut_windows(pairs, size)


def summary_table(results: dict[str, BenResult], methods: tuple[str, ...]) -> str:
    """Markdown: one row per descriptor, BA and F1 after the last round (mean over labels and seeds)."""
    lines = ["| descriptor | " + " | ".join(f"BA {m} (seed sd) | F1 {m}" for m in methods) + " |",
             "|---|" + "---|---|" * len(methods)]
    by_method = {m: {r["descriptor"]: r for r in summary_rows(results, m)} for m in methods}
    for name in results:
        cells = []
        for m in methods:
            r = by_method[m][name]
            cells.append(f"{r['balanced_accuracy']:.3f} (±{r['balanced_accuracy_sd']:.3f}) | {r['f1']:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_label_table(results: dict[str, BenResult], method: str) -> str:
    """Markdown: balanced accuracy / F1 per label and descriptor after the last round."""
    first = next(iter(results.values()))
    lines = ["| label (windows) | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]
    for li, label in enumerate(first.labels):
        cells = [f"{r.final(method, 'balanced_accuracy')[li].mean():.2f} / {r.final(method, 'f1')[li].mean():.2f}"
                 for r in results.values()]
        lines.append(f"| {label} ({first.positives[li]}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_round_table(results: dict[str, BenResult], method: str) -> str:
    """Markdown: balanced accuracy after each round (mean over labels and seeds)."""
    first = next(iter(results.values()))
    ba = METRICS.index("balanced_accuracy")
    head = " | ".join(f"round {r} ({n} labels)" for r, n in enumerate(first.n_labels.tolist()))
    lines = [f"| descriptor | {head} |", "|---|" + "---|" * len(first.n_labels)]
    for name, r in results.items():
        means = r.scores[method][..., ba].mean(axis=(0, 1))
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in means) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--window", type=int, default=30, help="sub-window side in px (30: 16 per pair)")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ben-") as work:
        windows = load_windows(args.window, Path(work))
    descriptors = window_descriptors(windows)
    cfg = BenProtocolConfig(seeds=tuple(range(args.seeds)))
    print(f"# BigEarthNet pairs: {len(windows.pair_ids)} pairs, {windows.n} windows of {args.window} px, "
          f"descriptors {', '.join(f'{k} {v.shape[1]}-d' for k, v in descriptors.items())} "
          f"({time.perf_counter() - t0:.1f} s); {args.seeds} seeds, start {cfg.n_initial_positive}+"
          f"{cfg.n_initial_negative}, {cfg.n_rounds} rounds of {cfg.batch_size}; Hellinger + linear SVM (C=10)")
    for pid, k in zip(windows.pair_ids, range(len(windows.pair_ids)), strict=True):
        print(f"#   pair {k}: {pid}: {'; '.join(sorted(windows.labels[int(np.flatnonzero(windows.pair == k)[0])]))}")

    t1 = time.perf_counter()
    lopo = leave_one_pair_out(descriptors, windows, cfg)
    t2 = time.perf_counter()
    pool = in_pool(descriptors, windows, cfg)
    t3 = time.perf_counter()
    methods = cfg.methods
    first = next(iter(lopo.values()))
    print(f"\n## Leave-one-pair-out, after round {cfg.n_rounds} (about {first.n_labels[-1]} labels of "
          f"{windows.n - windows.n // len(windows.pair_ids)} training windows), {len(first.labels)} labels "
          f"({t2 - t1:.0f} s)\n")
    print(summary_table(lopo, methods))
    print("\n### Per label (active), balanced accuracy / F1\n")
    print(per_label_table(lopo, "active"))
    print("\n### Balanced accuracy per round (active)\n")
    print(per_round_table(lopo, "active"))
    print(f"\n## In-pool (EuroSAT protocol: pool = evaluation set, {windows.n} windows), after round "
          f"{cfg.n_rounds} ({t3 - t2:.0f} s)\n")
    print(summary_table(pool, methods))
    if args.json:
        payload = {proto: {name: {m: summary_rows({name: r}, m)[0] for m in methods} for name, r in res.items()}
                   for proto, res in (("leave_one_pair_out", lopo), ("in_pool", pool))}
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"\nJSON: {args.json}")


if __name__ == "__main__":
    main()
