"""Processes that judge labels: system validation against ground truth, and label cleaning."""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from catalog import sessions as store
from eofusion.active import OracleConfig, compare_descriptors, find_suspect_labels, plot_accuracy, write_json_report
from eofusion.errors import InvalidInput
from plugins.base import Cost, EOFusionProcessor, Ident, ProcessInputs, Weight

Descriptor = Literal["fused", "s1", "s2"]

VALIDATE_METADATA: dict[str, Any] = {
    "version": "0.1.0", "id": "validate",
    "title": {"en": "System validation against ground truth"},
    "description": {"en": "Simulates a user as an oracle on a collection with ground truth: for each class "
                          "(one-vs-rest) starts from a few positives and negatives, adds the round's queries "
                          "(or random patches, the baseline) for N rounds, and reports per round overall "
                          "accuracy, balanced accuracy, precision, recall and F1, for each descriptor "
                          "(fused, S1-only, S2-only). Writes a JSON report and a PNG plot."},
    "jobControlOptions": ["sync-execute", "async-execute"], "keywords": ["validation", "accuracy"], "links": [],
    "outputs": {"report": {"title": "Accuracy per round", "schema": {"type": "object"},
                           "contentMediaType": "application/json"}},
    "example": {"inputs": {"collection": "eurosat", "descriptors": ["s2"], "rounds": 3, "seeds": 3}},
}

CLEANING_METADATA: dict[str, Any] = {
    "version": "0.1.0", "id": "label-cleaning",
    "title": {"en": "Annotations to review"},
    "description": {"en": "Lists annotated patches whose k nearest neighbours in descriptor space mostly carry "
                          "another label, with the label their neighbourhood suggests."},
    "jobControlOptions": ["sync-execute", "async-execute"], "keywords": ["annotations", "quality"], "links": [],
    "outputs": {"suspects": {"title": "Suspect labels", "schema": {"type": "object"},
                             "contentMediaType": "application/json"}},
    "example": {"inputs": {"collection": "eurosat", "source": "ground_truth"}},
}


class ValidateInputs(ProcessInputs):
    """Inputs of ``validate``."""

    collection: Annotated[Ident, Field(title="Collection with ground truth")]
    descriptors: Annotated[list[Descriptor] | None, Field(title="Descriptors to compare", max_length=3,
                                                          description="All three when absent or empty.")] = None
    label_level: Annotated[Literal[1, 2], Field(title="Catalogue level of the classes")] = 1
    rounds: Annotated[int, Field(title="Rounds", ge=1, le=20)] = 3
    seeds: Annotated[int, Field(title="Random starts per class", ge=1, le=50)] = 3
    batch_size: Annotated[int, Field(title="Labels added per round", ge=1, le=100)] = 10
    folds: Annotated[int, Field(
        title="Held-out folds", ge=0, le=10,
        description="k >= 2: stratified k-fold, each item scored by a model that never saw it (the default, 5); "
                    "0: every model scored on the pool it learned from (optimistic, for comparison).")] = 5


class CleaningInputs(ProcessInputs):
    """Inputs of ``label-cleaning``."""

    collection: Annotated[Ident, Field(title="Collection")]
    descriptor: Annotated[Descriptor, Field(title="Descriptor")] = "s2"
    k: Annotated[int, Field(title="Neighbours", ge=1, le=50)] = 5
    source: Annotated[Literal["annotations", "ground_truth"], Field(title="Labels to check")] = "annotations"


class ValidateProcessor(EOFusionProcessor[ValidateInputs]):
    """Oracle validation of active learning on a collection with ground truth."""

    inputs_model = ValidateInputs
    read_only = False  # it writes a JSON report and a PNG plot under files/reports
    cost = Cost(Weight.HEAVY, "simulates rounds x seeds x classes x descriptors SVM trainings")

    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, VALIDATE_METADATA)
        self.files_dir = Path(processor_def["files_dir"])

    def run(self, inputs: ValidateInputs) -> tuple[str, Any]:
        """Run the simulation and write the report and plot."""
        collection, level = inputs.collection, inputs.label_level
        if inputs.folds == 1:
            raise InvalidInput("folds must be 0 (in pool) or at least 2 (held out)")
        config = OracleConfig(n_rounds=inputs.rounds, batch_size=inputs.batch_size, seeds=tuple(range(inputs.seeds)),
                              folds=inputs.folds)
        kinds: list[str] = list(dict.fromkeys(inputs.descriptors or ["fused", "s1", "s2"]))
        with self.connect() as conn:
            truth = store.ground_truth_labels(conn, collection, level)
            if not truth:
                raise InvalidInput(f"collection {collection!r} has no ground truth at level {level}")
            matrices: dict[str, tuple[list[str], np.ndarray]] = {}
            for kind in kinds:
                ids, matrix, _ = store.pool_descriptors(conn, collection, kind)
                if ids:
                    matrices[kind] = (ids, matrix)
        if not matrices:
            raise InvalidInput(f"collection {collection!r} has none of the descriptors {kinds}")
        # Compare descriptors on the same items: those with ground truth and every descriptor.
        common = sorted(set.intersection(*(set(ids) for ids, _ in matrices.values())) & set(truth))
        labels = np.asarray([truth[i] for i in common])
        classes, counts = np.unique(labels, return_counts=True)
        # Held out, the oracle learns on (k-1)/k of the items: a class needs its starting positives there.
        need = config.n_initial_positive + 1
        if config.folds:
            need = math.ceil(need * config.folds / (config.folds - 1))
        usable = [str(c) for c, n in zip(classes, counts, strict=True) if n >= need and n <= len(common) - need]
        if not usable:
            raise InvalidInput(f"no class of {collection!r} has the {need}+ positives and negatives the protocol needs")
        self.progress(20, f"simulating {len(usable)} classes x {len(config.seeds)} starts")
        descriptors = {}
        for kind, (ids, matrix) in matrices.items():
            pos = {i: n for n, i in enumerate(ids)}
            descriptors[kind] = matrix[[pos[i] for i in common]]
        reports = compare_descriptors(descriptors, labels, usable, config)
        rid = uuid.uuid4().hex
        out_dir = self.files_dir / "reports"
        out_dir.mkdir(parents=True, exist_ok=True)
        json_path = write_json_report(reports, out_dir / f"validation-{rid}.json", items=common)
        png_path = plot_accuracy(reports, out_dir / f"validation-{rid}.png")
        r = config.n_rounds
        summary = {kind: {m: {metric: float(rep.mean(m, metric)[r]) for metric in ("overall_accuracy",
                                                                                  "balanced_accuracy", "f1")}
                          for m in config.methods} for kind, rep in reports.items()}
        per_round = {kind: {m: [float(v) for v in rep.mean(m, "balanced_accuracy")] for m in config.methods}
                     for kind, rep in reports.items()}
        first = next(iter(reports.values()))
        held_out: dict[str, Any] = {"protocol": first.protocol, "folds": config.folds}
        if first.folds is not None:
            # Which items each model never saw (first start; every start's split is in the report file).
            held_out["items_per_fold"] = [[common[i] for i in np.flatnonzero(first.folds[0] == f).tolist()][:1000]
                                          for f in range(config.folds)]
        return "application/json", {
            "collection": collection, "label_level": level, "items": len(common), "classes": usable,
            "evaluation": held_out,
            "rounds": r, "seeds": len(config.seeds), "after_last_round": summary,
            "balanced_accuracy_per_round": per_round,
            "report": f"/files/reports/{json_path.name}", "plot": f"/files/reports/{png_path.name}"}


class LabelCleaningProcessor(EOFusionProcessor[CleaningInputs]):
    """Annotations (or ground truth) whose neighbourhood disagrees."""

    inputs_model = CleaningInputs
    read_only = True  # it reads labels and descriptors only
    cost = Cost(Weight.HEAVY, "k-nearest neighbours of every labelled item: quadratic in the labels")

    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, CLEANING_METADATA)

    def run(self, inputs: CleaningInputs) -> tuple[str, Any]:
        """List suspects, most disagreeing first."""
        collection, k, source, kind = inputs.collection, inputs.k, inputs.source, inputs.descriptor
        with self.connect() as conn:
            pairs = store.annotated(conn, collection) if source == "annotations" else sorted(
                store.ground_truth_labels(conn, collection, 1).items())
            ids, matrix, _ = store.pool_descriptors(conn, collection, kind)
        pos = {i: n for n, i in enumerate(ids)}
        pairs = [(i, lab) for i, lab in pairs if i in pos]
        if len(pairs) <= k:
            raise InvalidInput(f"{len(pairs)} labelled items with {kind!r} descriptors in {collection!r}: need more "
                             f"than k={k}")
        suspects = find_suspect_labels(matrix[[pos[i] for i, _ in pairs]], [lab for _, lab in pairs], k=k)
        return "application/json", {"collection": collection, "checked": len(pairs), "k": k, "suspects": [
            {"item": pairs[s.index][0], "label": s.label, "suggested_label": s.suggested_label,
             "disagreement": s.disagreement, "neighbours": [pairs[n][0] for n in s.neighbours]} for s in suspects]}
