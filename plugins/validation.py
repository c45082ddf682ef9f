"""Processes that judge labels: system validation against ground truth, and label cleaning."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np

from catalog import sessions as store
from eofusion.active import OracleConfig, compare_descriptors, find_suspect_labels, plot_accuracy, write_json_report
from plugins.base import EOFusionProcessor, InputError, require

VALIDATE_METADATA: dict[str, Any] = {
    "version": "0.1.0", "id": "validate",
    "title": {"en": "System validation against ground truth"},
    "description": {"en": "Simulates a user as an oracle on a collection with ground truth: for each class "
                          "(one-vs-rest) starts from a few positives and negatives, adds the round's queries "
                          "(or random patches, the baseline) for N rounds, and reports per round overall "
                          "accuracy, balanced accuracy, precision, recall and F1, for each descriptor "
                          "(fused, S1-only, S2-only). Writes a JSON report and a PNG plot."},
    "jobControlOptions": ["sync-execute", "async-execute"], "keywords": ["validation", "accuracy"], "links": [],
    "inputs": {
        "collection": {"title": "Collection with ground truth", "schema": {"type": "string"}, "minOccurs": 1,
                       "maxOccurs": 1},
        "descriptors": {"title": "Descriptors to compare", "schema": {"type": "array", "items": {
            "type": "string", "enum": ["fused", "s1", "s2"]}}, "minOccurs": 0, "maxOccurs": 1},
        "label_level": {"title": "Catalogue level of the classes", "schema": {"type": "integer", "enum": [1, 2]},
                        "minOccurs": 0, "maxOccurs": 1},
        "rounds": {"title": "Rounds", "schema": {"type": "integer", "minimum": 1, "maximum": 20}, "minOccurs": 0,
                   "maxOccurs": 1},
        "seeds": {"title": "Random starts per class", "schema": {"type": "integer", "minimum": 1, "maximum": 50},
                  "minOccurs": 0, "maxOccurs": 1},
        "batch_size": {"title": "Labels added per round", "schema": {"type": "integer", "minimum": 1,
                                                                      "maximum": 100}, "minOccurs": 0, "maxOccurs": 1},
    },
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
    "inputs": {
        "collection": {"title": "Collection", "schema": {"type": "string"}, "minOccurs": 1, "maxOccurs": 1},
        "descriptor": {"title": "Descriptor", "schema": {"type": "string", "enum": ["fused", "s1", "s2"]},
                       "minOccurs": 0, "maxOccurs": 1},
        "k": {"title": "Neighbours", "schema": {"type": "integer", "minimum": 1, "maximum": 50}, "minOccurs": 0,
              "maxOccurs": 1},
        "source": {"title": "Labels to check", "schema": {"type": "string", "enum": ["annotations", "ground_truth"]},
                   "minOccurs": 0, "maxOccurs": 1},
    },
    "outputs": {"suspects": {"title": "Suspect labels", "schema": {"type": "object"},
                             "contentMediaType": "application/json"}},
    "example": {"inputs": {"collection": "eurosat", "source": "ground_truth"}},
}


def _int(data: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    v = data.get(name, default)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise InputError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")
    return v


class ValidateProcessor(EOFusionProcessor):
    """Oracle validation of active learning on a collection with ground truth."""

    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, VALIDATE_METADATA)
        self.files_dir = Path(processor_def["files_dir"])

    def execute(self, data: dict[str, Any], outputs: Any = None) -> tuple[str, Any]:
        """Run the simulation and write the report and plot."""
        collection = require(data, "collection", str)
        level = _int(data, "label_level", 1, 1, 2)
        config = OracleConfig(n_rounds=_int(data, "rounds", 3, 1, 20), batch_size=_int(data, "batch_size", 10, 1, 100),
                              seeds=tuple(range(_int(data, "seeds", 3, 1, 50))))
        kinds = data.get("descriptors") or ["fused", "s1", "s2"]
        if not isinstance(kinds, list) or not all(k in ("fused", "s1", "s2") for k in kinds):
            raise InputError(f"descriptors must be a list of fused, s1, s2; got {kinds!r}")
        with self.connect() as conn:
            truth = store.ground_truth_labels(conn, collection, level)
            if not truth:
                raise InputError(f"collection {collection!r} has no ground truth at level {level}")
            matrices: dict[str, tuple[list[str], np.ndarray]] = {}
            for kind in kinds:
                ids, matrix, _ = store.pool_descriptors(conn, collection, kind)
                if ids:
                    matrices[kind] = (ids, matrix)
        if not matrices:
            raise InputError(f"collection {collection!r} has none of the descriptors {kinds}")
        # Compare descriptors on the same items: those with ground truth and every descriptor.
        common = sorted(set.intersection(*(set(ids) for ids, _ in matrices.values())) & set(truth))
        labels = np.asarray([truth[i] for i in common])
        classes, counts = np.unique(labels, return_counts=True)
        need = config.n_initial_positive + 1
        usable = [str(c) for c, n in zip(classes, counts, strict=True) if n >= need and n <= len(common) - need]
        if not usable:
            raise InputError(f"no class of {collection!r} has the {need}+ positives and negatives the protocol needs")
        self.progress(20, f"simulating {len(usable)} classes x {len(config.seeds)} starts")
        descriptors = {}
        for kind, (ids, matrix) in matrices.items():
            pos = {i: n for n, i in enumerate(ids)}
            descriptors[kind] = matrix[[pos[i] for i in common]]
        reports = compare_descriptors(descriptors, labels, usable, config)
        rid = uuid.uuid4().hex
        out_dir = self.files_dir / "reports"
        out_dir.mkdir(parents=True, exist_ok=True)
        json_path = write_json_report(reports, out_dir / f"validation-{rid}.json")
        png_path = plot_accuracy(reports, out_dir / f"validation-{rid}.png")
        r = config.n_rounds
        summary = {kind: {m: {metric: float(rep.mean(m, metric)[r]) for metric in ("overall_accuracy",
                                                                                  "balanced_accuracy", "f1")}
                          for m in config.methods} for kind, rep in reports.items()}
        per_round = {kind: {m: [float(v) for v in rep.mean(m, "balanced_accuracy")] for m in config.methods}
                     for kind, rep in reports.items()}
        return "application/json", {
            "collection": collection, "label_level": level, "items": len(common), "classes": usable,
            "rounds": r, "seeds": len(config.seeds), "after_last_round": summary,
            "balanced_accuracy_per_round": per_round,
            "report": f"/files/reports/{json_path.name}", "plot": f"/files/reports/{png_path.name}"}


class LabelCleaningProcessor(EOFusionProcessor):
    """Annotations (or ground truth) whose neighbourhood disagrees."""

    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, CLEANING_METADATA)

    def execute(self, data: dict[str, Any], outputs: Any = None) -> tuple[str, Any]:
        """List suspects, most disagreeing first."""
        collection = require(data, "collection", str)
        k = _int(data, "k", 5, 1, 50)
        source = data.get("source", "annotations")
        kind = data.get("descriptor", "s2")
        if source not in ("annotations", "ground_truth") or kind not in ("fused", "s1", "s2"):
            raise InputError("source is annotations or ground_truth; descriptor is fused, s1 or s2")
        with self.connect() as conn:
            pairs = store.annotated(conn, collection) if source == "annotations" else sorted(
                store.ground_truth_labels(conn, collection, 1).items())
            ids, matrix, _ = store.pool_descriptors(conn, collection, kind)
        pos = {i: n for n, i in enumerate(ids)}
        pairs = [(i, lab) for i, lab in pairs if i in pos]
        if len(pairs) <= k:
            raise InputError(f"{len(pairs)} labelled items with {kind!r} descriptors in {collection!r}: need more "
                             f"than k={k}")
        suspects = find_suspect_labels(matrix[[pos[i] for i, _ in pairs]], [lab for _, lab in pairs], k=k)
        return "application/json", {"collection": collection, "checked": len(pairs), "k": k, "suspects": [
            {"item": pairs[s.index][0], "label": s.label, "suggested_label": s.suggested_label,
             "disagreement": s.disagreement, "neighbours": [pairs[n][0] for n in s.neighbours]} for s in suspects]}
