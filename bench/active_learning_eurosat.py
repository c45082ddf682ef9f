"""Oracle validation of the active-learning core on the real EuroSAT-MS sample (216 patches, 10 classes).

For every class one-vs-rest: 5 random positives + 5 random negatives, then 3 rounds of at most 10
labels each (40 labels after round 3), chosen by the round's query batch ("active") or at random
("random", same SVM, same starts). Held out by default (``--folds 5``): the patches are split in
stratified folds and each fold is predicted (SVM decision > 0) by the models of an oracle that learned on
the other folds only; ``--folds 0`` scores every model on the whole pool it learned from, labelled patches
included (the optimistic figure of earlier reports). Figures are means over classes and seeds. Printed:

1. the table per class (balanced accuracy and F1 of the positive class after each round,
   ``active / random``) for the chosen descriptor/kernel (13-band spectral histograms + NDVI/NDWI,
   Hellinger map + linear SVM), for the early-fusion variant (NIR texture + spectral), and for the
   baseline (16-bin histograms of the four 10 m bands, RBF SVM);
2. the kernel comparison on the spectral descriptor, and the sensitivity to ``C`` and to the
   candidate factor of the query selection (the defaults are not tuned on this sample: these
   tables show how flat the results are around them).

    .venv/bin/python bench/active_learning_eurosat.py [--seeds 20] [--folds 5] [--json out.json] [--png out.png]
        [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eofusion.active import (  # noqa: E402
    KERNELS,
    OracleConfig,
    OracleReport,
    RoundConfig,
    compare_descriptors,
    format_table,
    plot_accuracy,
    simulate,
    write_json_report,
)
from eofusion.active.eurosat import (  # noqa: E402
    fused_descriptors,
    load_eurosat_ms,
    nir_texture_descriptors,
    rgbn_histograms,
    spectral_descriptors,
)

DATA = ROOT.parent / "shared" / "data" / "eurosat-ms"
if not DATA.is_dir():  # a clone without ../shared: the committed subset
    DATA = ROOT / "tests" / "fixtures" / "eurosat-ms"


def summary_line(label: str, rep: OracleReport, r: int) -> str:
    ba_a, ba_r = rep.mean("active", "balanced_accuracy")[r], rep.mean("random", "balanced_accuracy")[r]
    f1_a, f1_r = rep.mean("active", "f1")[r], rep.mean("random", "f1")[r]
    sd = rep.seed_std("active", "balanced_accuracy")[r]
    return f"| {label} | {ba_a:.3f} (±{sd:.3f}) | {ba_r:.3f} | {f1_a:.3f} | {f1_r:.3f} |"


SUMMARY_HEAD = "| {} | BA active (seed sd) | BA random | F1 active | F1 random |\n|---|---|---|---|---|"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20, help="random starts per class")
    ap.add_argument("--json", type=Path, default=None, help="write the main reports as JSON")
    ap.add_argument("--png", type=Path, default=None, help="plot balanced accuracy per round")
    ap.add_argument("--quick", action="store_true", help="skip the kernel / C / candidate tables")
    ap.add_argument("--folds", type=int, default=5,
                    help="held-out folds (each patch scored by models that never saw it); 0: scored in pool")
    args = ap.parse_args()

    t0 = time.perf_counter()
    sample = load_eurosat_ms(DATA)
    descriptors = {
        "s2 spectral-240 hellinger": spectral_descriptors(sample.patches),
        "fused nir-texture+spectral hellinger": fused_descriptors(sample.patches),
        "texture-only (wld B08) hellinger": nir_texture_descriptors(sample.patches),
        "baseline rgbn-64 rbf": rgbn_histograms(sample.patches),
    }
    print(
        f"# EuroSAT-MS oracle: {len(sample.labels)} patches, {len(sample.classes)} classes, "
        f"descriptors in {time.perf_counter() - t0:.1f} s, {args.seeds} seeds"
    )
    held = f"held out: stratified {args.folds}-fold, each patch predicted by models that learned on the other folds"
    print("# evaluation: " + (held if args.folds else
                              "in pool: each model scored on the patches it learned from (optimistic)"))
    seeds = tuple(range(args.seeds))
    base = OracleConfig(seeds=seeds, folds=args.folds)
    configs = {name: base for name in descriptors}
    configs["baseline rgbn-64 rbf"] = dataclasses.replace(base, round=RoundConfig(kernel="rbf"))

    t1 = time.perf_counter()
    reports = compare_descriptors(descriptors, sample.labels, config=configs)
    r = base.n_rounds
    print(
        f"\n## Summary after round {r} ({reports[next(iter(reports))].n_labels['active'][0, 0, r]} labels), "
        f"mean over classes and {args.seeds} seeds ({time.perf_counter() - t1:.1f} s)\n"
    )
    print(SUMMARY_HEAD.format("descriptor / kernel"))
    for name, rep in reports.items():
        print(summary_line(name, rep, r))
    for name, rep in reports.items():
        if name.startswith("texture-only"):
            continue
        print(f"\n## {name}: per class, `active / random`, after each round (labels)\n")
        print(format_table(rep))

    if args.json:
        print(f"\nJSON: {write_json_report(reports, args.json)}")
    if args.png:
        main_reports = {k: v for k, v in reports.items() if not k.startswith("texture-only")}
        print(f"PNG: {plot_accuracy(main_reports, args.png)}")
    if args.quick:
        return

    s2 = descriptors["s2 spectral-240 hellinger"]
    print(f"\n## Kernels on the s2 spectral descriptor (C=10, balanced), after round {r}\n")
    print(SUMMARY_HEAD.format("kernel"))
    for kernel in KERNELS:
        rep = simulate(s2, sample.labels, config=dataclasses.replace(base, round=RoundConfig(kernel=kernel)))
        print(summary_line(kernel, rep, r))
    print("\n| kernel on rgbn-64 | BA active (seed sd) | BA random | F1 active | F1 random |\n|---|---|---|---|---|")
    for kernel in ("hellinger", "rbf"):
        rep = simulate(
            descriptors["baseline rgbn-64 rbf"],
            sample.labels,
            config=dataclasses.replace(base, round=RoundConfig(kernel=kernel)),
        )
        print(summary_line(kernel, rep, r))

    print(f"\n## Sensitivity of the s2 Hellinger round to C, after round {r}\n")
    print(SUMMARY_HEAD.format("C"))
    for c in (1.0, 3.0, 10.0, 30.0, 100.0):
        rep = simulate(s2, sample.labels, config=dataclasses.replace(base, round=RoundConfig(C=c)))
        print(summary_line(f"{c:g}", rep, r))

    print(f"\n## Sensitivity to the candidate factor of the query selection (s2 Hellinger), after round {r}\n")
    print(SUMMARY_HEAD.format("candidates = f x batch"))
    for f in (1, 3, 5, 10):
        rep = simulate(s2, sample.labels, config=dataclasses.replace(base, round=RoundConfig(candidate_factor=f)))
        print(summary_line(f"f = {f}" + (" (no diversity)" if f == 1 else ""), rep, r))
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
