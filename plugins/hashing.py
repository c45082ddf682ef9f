"""Learned search as OGC API Processes: train a deep-hashing model or a text-to-patch projection on a
collection's labels, and search patches by free text.

Training processes read the collection's labelled descriptors (ground truth and/or annotations), train
(reporting progress in the job status), encode every item of the collection, store model and codes (or
patch embeddings) in the catalogue, make the model the collection's active one, and publish it as a STAC
item with the Machine Learning Model extension in the ``models`` collection. With ``holdout`` a stratified
share of the labelled items is kept out of training and evaluated (mAP@10 / precision@10).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, StringConstraints

from catalog import hashing as hash_store
from catalog import hrefs, model_items
from catalog import text2patch as text_store
from catalog.descriptors import richest_kind
from catalog.hashing import LabelSource
from catalog.load import collection_exists
from catalog.sessions import pool_descriptors
from eofusion.errors import InvalidInput, NotFound
from eofusion.evaluation.retrieval import precision_at_k
from eofusion.hashing import DeepHasher, HashingConfig, hamming_distances, pairwise_distances, train_hashing
from eofusion.hashing.evaluate import ap_at_k
from eofusion.paths import inside, safe_name
from eofusion.text2patch import Text2PatchConfig, Text2PatchModel, build_vocabulary, readable_name, train_text2patch
from plugins.base import Bound, Cost, EOFusionProcessor, FileSafeId, I, Ident, ProcessInputs, Weight

KINDS = ("fused", "s1", "s2")
LABEL_SOURCES = ("ground_truth", "annotations", "both")
MAX_EPOCHS = 2000
K = 10  # cut-off of the held-out metrics
#: Elements of the (positive pairs x items) matrices of eofusion.hashing's full-set triplet monitor allowed
#: (~18 bytes each, so ~0.5 GB). That monitor (semi-hard mining over the first 4096 training items) needs memory
#: ~ n^3 / classes: 4096 items of 64 classes took 20 GB and the kernel killed the process. Larger label sets
#: are trained on a seeded random subset that fits (see _affordable_items).
MONITOR_BUDGET = 3e7
_MONITOR_ITEMS = 4096

Descriptor = Literal["fused", "s1", "s2"]
Bits = Literal[32, 64, 128]
if set(get_args(Bits)) != set(hash_store.BITS):  # one list of code lengths: the catalogue's
    raise ImportError(f"plugins.hashing offers {get_args(Bits)} bits, catalog.hashing stores {hash_store.BITS}")


class TrainingInputs(ProcessInputs):
    """Inputs both training processes take."""

    # The collection id is part of the model's item id, which names its weights file.
    collection: Annotated[FileSafeId, Field(title="Collection to index (its labelled patches train the model)")]
    descriptor: Annotated[Descriptor | None, Field(
        title="Descriptor the model reads (default: the richest the collection has)")] = None
    epochs: Annotated[int, Field(title="Training epochs", ge=1, le=MAX_EPOCHS)] = 300
    labels: Annotated[LabelSource, Field(
        title="Labels to learn from: ground truth, annotations or both (several per patch allowed)")] = "ground_truth"
    holdout: Annotated[float, Field(title="Share of the labelled patches kept out of training and evaluated",
                                    ge=0, le=0.9)] = 0.0
    seed: Annotated[int, Field(title="Random seed (split, weights)", ge=0, le=2**31 - 1)] = 0


class HashingInputs(TrainingInputs):
    """Inputs of ``train-hashing``."""

    bits: Annotated[Bits, Field(title="Code length K")] = 64
    label_level: Annotated[Literal[1, 2], Field(
        title="Catalogue level of the labels (1: level-1 classes; 2: finest label)")] = 2


class TextSearchInputs(ProcessInputs):
    """Inputs of ``text-search``."""

    collection: Annotated[Ident, Field(title="Collection")]
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1), Bound("text_chars"),
                    Field(title="Query text")]
    limit: Annotated[int, Field(title="Patches to return", ge=1), Bound("page_limit", cap=1000)] = 10


_TRAINED_OUTPUT = {"title": "The stored model", "schema": {"type": "object", "properties": {
    "model": {"type": "string"}, "item": {"type": "string"}, "metrics": {"type": "object"}}},
    "contentMediaType": "application/json"}

HASHING_METADATA: dict[str, Any] = {
    "version": "0.1.0", "id": "train-hashing",
    "title": {"en": "Train a deep-hashing model"},
    "description": {"en": "Trains a MiLAN-style metric-learning hashing network on a collection's labelled patch "
                          "descriptors (ground truth of catalogue level 1 or 2 and/or annotations; several labels "
                          "per patch allowed), encodes every patch of the collection into K-bit codes, stores model "
                          "and codes (HNSW-indexed for Hamming search) and publishes the model as a STAC item "
                          "(mlm extension) in the 'models' collection. The model becomes the collection's active "
                          "one for POST /stac/search with descriptor 'hash'. Needs an API key."},
    "jobControlOptions": ["sync-execute", "async-execute"], "keywords": ["deep hashing", "similarity search"],
    "links": [],
    "outputs": {"model": _TRAINED_OUTPUT},
    "example": {"inputs": {"collection": "eurosat", "descriptor": "s2", "bits": 64, "epochs": 300}},
}

TEXT2PATCH_METADATA: dict[str, Any] = {
    "version": "0.1.0", "id": "train-text2patch",
    "title": {"en": "Train a text-to-patch model"},
    "description": {"en": "Trains a projection of MiniLM sentence embeddings and patch descriptors into one space "
                          "on a collection's labelled patches and the texts of their labels (catalogue names and "
                          "descriptions, EuroSAT class descriptions), embeds every patch of the collection, stores "
                          "model and embeddings and publishes the model as a STAC item (mlm extension) in the "
                          "'models' collection. It then ranks patches for q_semantic in POST /stac/search and for "
                          "the text-search process. Needs an API key."},
    "jobControlOptions": ["sync-execute", "async-execute"], "keywords": ["text to image", "similarity search"],
    "links": [], "outputs": {"model": _TRAINED_OUTPUT},
    "example": {"inputs": {"collection": "eurosat", "descriptor": "s2", "epochs": 300}},
}

TEXT_SEARCH_METADATA: dict[str, Any] = {
    "version": "0.1.0", "id": "text-search",
    "title": {"en": "Search patches by free text"},
    "description": {"en": "Ranks a collection's patches for a free-text query ('sea', 'dense forest', 'a river "
                          "crossing fields') with the collection's text-to-patch model (train-text2patch)."},
    "jobControlOptions": ["sync-execute", "async-execute"], "keywords": ["text search"], "links": [],
    "outputs": {"results": {"title": "Patches, best first", "schema": {"type": "object"},
                            "contentMediaType": "application/json"}},
    "example": {"inputs": {"collection": "eurosat", "text": "sea", "limit": 10}},
}


# -- inputs -------------------------------------------------------------------------------------------------------


def _descriptor(conn: Any, collection: str, given: str | None) -> str:
    if given is not None:
        return given
    kind = richest_kind(conn, collection)
    if kind is not None:
        return kind
    raise InvalidInput(f"collection {collection!r} has no patch descriptors (unknown collection or nothing ingested)")


def _check_collection(conn: Any, collection: str) -> None:
    if not collection_exists(conn, collection):
        raise NotFound(f"collection {collection!r} does not exist")


def _no_labels(collection: str, source: str) -> InvalidInput:
    what = {"ground_truth": "no ground truth (eofusion.ground_truth)", "annotations": "no annotations",
            "both": "neither ground truth nor annotations"}[source]
    hint = " (train on annotations with labels='annotations')" if source == "ground_truth" else ""
    return InvalidInput(f"collection {collection!r} has {what}{hint}: nothing to learn from")


def _split(labels: list[frozenset[str]], holdout: float, seed: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Train / held-out positions, stratified by label set (classes too small to split stay in training)."""
    n = len(labels)
    if holdout <= 0:
        return np.arange(n, dtype=np.int64), np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    strata: dict[frozenset[str], list[int]] = {}
    for i, lab in enumerate(labels):
        strata.setdefault(lab, []).append(i)
    test: list[int] = []
    for members in strata.values():
        if len(members) < 2:
            continue
        take = min(len(members) - 1, int(round(holdout * len(members))))
        test += rng.choice(members, size=take, replace=False).tolist()
    held = np.sort(np.asarray(test, dtype=np.int64))
    return np.setdiff1d(np.arange(n, dtype=np.int64), held), held


def _labelled(conn: Any, collection: str, kind: str, labels: dict[str, set[str]]
              ) -> tuple[list[str], NDArray[np.float32], list[int], list[frozenset[str]]]:
    """All items with the descriptor, their matrix, and the positions and label sets of the labelled ones."""
    ids, matrix, _ = pool_descriptors(conn, collection, kind)
    if not ids:
        raise InvalidInput(f"collection {collection!r} has no {kind!r} descriptors")
    pos = [i for i, item in enumerate(ids) if item in labels]
    sets = [frozenset(labels[ids[i]]) for i in pos]
    if len(pos) < 2 or len(set().union(*sets)) < 2:
        raise InvalidInput(f"collection {collection!r} has {len(pos)} labelled items with {kind!r} descriptors and "
                         f"{len(set().union(*sets)) if sets else 0} distinct label(s): training needs at least two "
                         "items and two labels")
    return ids, matrix, pos, sets


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Train on one intra-op thread: the server answers requests meanwhile, and on a busy machine torch's
    default (one thread per core) made 600 epochs on 130 patches ten times slower, not faster."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _affordable_items(sets: list[frozenset[str]]) -> int:
    """How many of these labelled items a hashing model can train on within :data:`MONITOR_BUDGET`.

    Positive pairs are estimated as the sum over labels of (items with it)^2, shrinking with the square of the
    share of items kept; the monitor's cost is pairs x items over its first 4096 items.
    """
    total = len(sets)
    counts: dict[str, int] = {}
    for labels in sets:
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
    pairs = float(sum(c * c for c in counts.values()))
    monitored = min(total, _MONITOR_ITEMS)
    if pairs == 0 or (monitored / total) ** 2 * pairs * monitored <= MONITOR_BUDGET:
        return total
    return max(2, int((MONITOR_BUDGET * total * total / pairs) ** (1 / 3)))


def _stamp() -> tuple[datetime, str]:
    now = datetime.now(UTC).replace(microsecond=0)
    return now, now.strftime("%Y%m%dT%H%M%SZ")


def _model_item_href(item_id: str) -> str:
    """A model item as a process output names it (stored form: the OGC answer makes it absolute)."""
    return f"{hrefs.STAC}/{hrefs.stac_item_path(model_items.MODELS_COLLECTION, item_id)}"


def _write_weights(files_dir: Path, item_id: str, blob: bytes) -> str:
    name = f"{safe_name(item_id, 'model item id')}.pt"
    folder = files_dir / hrefs.MODELS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    target = inside(folder, name, "weights file")
    tmp = inside(folder, f".{name}.tmp", "weights file")
    tmp.write_bytes(blob)
    tmp.replace(target)  # readers of /files never see half a file
    return name


# -- held-out evaluation ------------------------------------------------------------------------------------------


def hashing_map(model: DeepHasher, x: NDArray[np.float32], labels: list[frozenset[str]], queries: NDArray[np.int64],
                depth: int = hash_store.RERANK_DEPTH, k: int = K, seed: int = 0) -> dict[str, float]:
    """mAP@k of exact L2 search, Hamming search and Hamming top ``depth`` re-ranked by L2, multi-label aware.

    Every labelled item is searched (queries excluded for themselves); relevant means sharing a label. Ties of
    Hamming distances are broken by a seeded random order, so that the stored order of items cannot help.

    Args:
        model: Trained hasher.
        x: ``(n, d)`` labelled descriptors.
        labels: Their label sets.
        queries: Positions of the held-out queries.
        depth: Hamming candidates re-ranked.
        k: Cut-off.
        seed: Seed of the tie-breaking order.
    """
    order = np.random.default_rng(seed).permutation(len(labels))
    xs, ls = x[order], [labels[i] for i in order]
    where = {int(o): n for n, o in enumerate(order)}
    codes = model.encode(xs)
    out: dict[str, list[float]] = {"exact": [], "hamming": [], "reranked": []}
    for q in queries.tolist():
        qi = where[q]
        keep = np.flatnonzero(np.arange(len(ls)) != qi)
        rel = np.fromiter((bool(ls[qi] & ls[j]) for j in keep), dtype=bool, count=keep.size)
        n_rel = int(rel.sum())
        d = pairwise_distances(xs[qi : qi + 1], xs[keep], "euclidean")[0]
        h = hamming_distances(codes[qi], codes[keep])
        by_h = np.argsort(h, kind="stable")
        top = by_h[:depth]
        out["exact"].append(ap_at_k(rel[np.argsort(d, kind="stable")], n_rel, k))
        out["hamming"].append(ap_at_k(rel[by_h], n_rel, k))
        out["reranked"].append(ap_at_k(rel[np.concatenate([top[np.argsort(d[top], kind="stable")], by_h[depth:]])],
                                       n_rel, k))
    return {f"map@{k}_{name}": float(np.mean(v)) for name, v in out.items()}


def text2patch_precision(model: Text2PatchModel, x: NDArray[np.float32], labels: list[frozenset[str]],
                         queries: NDArray[np.int64], k: int = K) -> dict[str, Any]:
    """Precision@k of each class name (made readable) as a text query over the held-out patches, and chance."""
    from eofusion.text2patch.encoder import default_encoder

    held = [labels[i] for i in queries.tolist()]
    classes = sorted(set().union(*held)) if held else []
    patches = model.embed_patches(x[queries])
    per_class: dict[str, dict[str, float]] = {}
    for cls in classes:
        q = model.embed_queries(readable_name(cls.split(" / ")[-1]), default_encoder())[0]
        ranked = np.argsort(-(patches @ q), kind="stable")
        rel = np.fromiter((cls in held[i] for i in ranked), dtype=bool, count=ranked.size)
        per_class[cls] = {"precision": precision_at_k(list(range(ranked.size)), rel, k),
                          "chance": float(np.mean([cls in s for s in held]))}
    mean = float(np.mean([v["precision"] for v in per_class.values()])) if per_class else float("nan")
    return {f"precision@{k}_mean": mean, f"precision@{k}_per_class": per_class}


# -- processes ----------------------------------------------------------------------------------------------------


class _TrainingProcessor(EOFusionProcessor[I]):
    """Shared parts of the training processes: both write models, codes and a weights file."""

    read_only = False  # model rows, codes or embeddings, a STAC item and a weights file under files/models
    cost = Cost(Weight.HEAVY, "trains a network for up to 2000 epochs, then encodes every patch")

    def __init__(self, processor_def: dict[str, Any], metadata: dict[str, Any]) -> None:
        super().__init__(processor_def, metadata)
        self.files_dir = Path(processor_def["files_dir"])

    def _training_progress(self, lo: float, hi: float) -> Callable[[float, str], None]:
        # Training fills [lo, hi] of the job's progress; reading data and storing take the rest.
        return lambda frac, msg: self.progress(lo + (hi - lo) * frac, msg)


class TrainHashingProcessor(_TrainingProcessor[HashingInputs]):
    """Train, store and publish a deep-hashing model of a collection."""

    inputs_model = HashingInputs

    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, HASHING_METADATA)

    def run(self, inputs: HashingInputs) -> tuple[str, Any]:
        """Train on the labelled patches, encode the collection, store and publish; returns ids and metrics."""
        collection, epochs, source, holdout, seed = (inputs.collection, inputs.epochs, inputs.labels, inputs.holdout,
                                                     inputs.seed)
        bits, level = inputs.bits, inputs.label_level
        with self.connect() as conn:
            _check_collection(conn, collection)
            kind = _descriptor(conn, collection, inputs.descriptor)
            self.progress(12, "reading labels and descriptors")
            labels = hash_store.training_labels(conn, collection, source, level)
            if not labels:
                raise _no_labels(collection, source)
            ids, matrix, pos, sets = _labelled(conn, collection, kind, labels)
        x = matrix[pos]
        train, test = _split(sets, holdout, seed)
        available = len(train)
        affordable = _affordable_items([sets[i] for i in train.tolist()])
        if affordable < available:
            train = np.sort(np.random.default_rng(seed).choice(train, affordable, replace=False))
        cfg = HashingConfig(n_bits=bits, epochs=epochs, seed=seed)
        with _one_torch_thread():
            model, history = train_hashing(x[train], [sets[i] for i in train.tolist()], cfg,
                                           progress=self._training_progress(15, 80), descriptor_name=kind)
        self.progress(82, f"encoding {len(ids)} patches")
        codes = model.encode_text(matrix)
        metrics: dict[str, Any] = {**model.metadata["training"], "n_items": len(train), "labelled_available": available,
                                   "epochs": epochs}
        if test.size:
            self.progress(86, f"evaluating {test.size} held-out patches")
            metrics["held_out"] = {"n_queries": int(test.size), "rerank_depth": hash_store.RERANK_DEPTH,
                                   **hashing_map(model, x, sets, test, seed=seed)}
        model_id = uuid.uuid4()
        created, stamp = _stamp()
        item_id = f"{collection}-hashing-{kind}-{bits}bit-{stamp}-{model_id.hex[:8]}"
        held_ids = [ids[pos[i]] for i in test.tolist()]
        model.metadata.update({"name": item_id, "collection": collection, "label_source": source,
                               "label_level": level, "held_out_items": held_ids, "metrics": metrics})
        self.progress(90, "storing model and codes")
        with self.connect() as conn:
            hash_store.store_hash_model(conn, collection, model, ids, codes, model_id=model_id)
            geometry, bbox = model_items.collection_footprint(conn, collection)
            file_name = _write_weights(self.files_dir, item_id, model.to_bytes())
            item = model_items.model_item(
                item_id, model.mlm_metadata(name=item_id), kind="hashing", trained_on=collection, descriptor=kind,
                model_id=str(model_id), created=created, geometry=geometry, bbox=bbox, file_name=file_name,
                properties={"eofusion:bits": bits, "eofusion:label_source": source, "eofusion:label_level": level,
                            "eofusion:classes": model.metadata["training_data"]["classes"],
                            "eofusion:metrics": metrics})
            model_items.publish_model_item(conn, item)
            hash_store.set_stac_item(conn, "hash", model_id, model_items.MODELS_COLLECTION, item_id)
            conn.commit()
        return "application/json", {
            "model": str(model_id), "item": item_id, "collection": collection, "descriptor": kind, "bits": bits,
            "items_encoded": len(ids), "trained_on": len(train), "held_out": held_ids,
            "stac_item": _model_item_href(item_id),
            "metrics": {**metrics, "loss": history.loss[-1]}}


class TrainText2PatchProcessor(_TrainingProcessor[TrainingInputs]):
    """Train, store and publish a text-to-patch model of a collection."""

    inputs_model = TrainingInputs

    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, TEXT2PATCH_METADATA)

    def run(self, inputs: TrainingInputs) -> tuple[str, Any]:
        """Train on labelled patches and label texts, embed the collection, store and publish."""
        from eofusion.text2patch.encoder import default_encoder

        collection, epochs, source, holdout, seed = (inputs.collection, inputs.epochs, inputs.labels, inputs.holdout,
                                                     inputs.seed)
        with self.connect() as conn:
            _check_collection(conn, collection)
            kind = _descriptor(conn, collection, inputs.descriptor)
            self.progress(12, "reading labels and descriptors")
            classes, texts = text_store.training_classes(conn, collection, source)
            if not classes:
                raise _no_labels(collection, source)
            ids, matrix, pos, sets = _labelled(conn, collection, kind, classes)
        x = matrix[pos]
        train, test = _split(sets, holdout, seed)
        present = sorted(set().union(*[sets[i] for i in train.tolist()]))
        vocabulary = build_vocabulary({c: texts[c] for c in present}, classes=present)
        self.progress(14, f"embedding {len(vocabulary.texts)} label texts")
        encoder = default_encoder()
        cfg = Text2PatchConfig(shared_dim=text_store.SHARED_DIM, epochs=epochs, seed=seed)
        with _one_torch_thread():
            model, history = train_text2patch(x[train], [sorted(sets[i]) for i in train.tolist()], vocabulary,
                                              encoder.encode(list(vocabulary.texts)), cfg,
                                              progress=self._training_progress(15, 80), descriptor_name=kind,
                                              text_model=encoder.name)
        self.progress(82, f"embedding {len(ids)} patches")
        embeddings = model.embed_patches(matrix)
        metrics: dict[str, Any] = {**model.metadata["training"], "n_items": len(train), "epochs": epochs}
        if test.size:
            metrics["held_out"] = {"n_queries": int(test.size), **text2patch_precision(model, x, sets, test)}
        model_id = uuid.uuid4()
        created, stamp = _stamp()
        item_id = f"{collection}-text2patch-{kind}-{stamp}-{model_id.hex[:8]}"
        held_ids = [ids[pos[i]] for i in test.tolist()]
        model.metadata.update({"name": item_id, "collection": collection, "label_source": source,
                               "held_out_items": held_ids, "metrics": metrics})
        self.progress(90, "storing model and embeddings")
        with self.connect() as conn:
            text_store.store_text2patch_model(conn, collection, model, ids, embeddings, model_id=model_id)
            geometry, bbox = model_items.collection_footprint(conn, collection)
            file_name = _write_weights(self.files_dir, item_id, model.to_bytes())
            item = model_items.model_item(
                item_id, model.mlm_metadata(name=item_id), kind="text2patch", trained_on=collection,
                descriptor=kind, model_id=str(model_id), created=created, geometry=geometry, bbox=bbox,
                file_name=file_name, properties={"eofusion:label_source": source, "eofusion:classes": present,
                                                 "eofusion:metrics": metrics})
            model_items.publish_model_item(conn, item)
            hash_store.set_stac_item(conn, "text2patch", model_id, model_items.MODELS_COLLECTION, item_id)
            conn.commit()
        return "application/json", {
            "model": str(model_id), "item": item_id, "collection": collection, "descriptor": kind,
            "items_embedded": len(ids), "trained_on": len(train), "held_out": held_ids, "classes": present,
            "stac_item": _model_item_href(item_id),
            "metrics": {**metrics, "loss": history.loss[-1]}}


class TextSearchProcessor(EOFusionProcessor[TextSearchInputs]):
    """Patches of a collection ranked for a free-text query."""

    inputs_model = TextSearchInputs
    read_only = True  # it reads the model and the patch embeddings
    cost = Cost(Weight.LIGHT, "embeds one sentence and runs one nearest-neighbour query")

    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, TEXT_SEARCH_METADATA)

    def run(self, inputs: TextSearchInputs) -> tuple[str, Any]:
        """Rank with the collection's active text-to-patch model."""
        collection, text, limit = inputs.collection, inputs.text, inputs.limit
        # pygeoapi runs processes in a worker thread without a running event loop: the search (shared with the
        # STAC API, on asyncpg) runs in a loop of its own.
        return "application/json", asyncio.run(self._search(collection, text, limit))

    async def _search(self, collection: str, text: str, limit: int) -> dict[str, Any]:
        import asyncpg

        from catalog.similarity import where_clause

        conn = await asyncpg.connect(self.database_url, server_settings={"search_path": "pgstac,public"})
        try:
            stored = await text_store.active_text2patch_model_async(conn, collection)
            if stored is None:
                raise InvalidInput(f"collection {collection!r} has no text-to-patch model: train one with the "
                                 "train-text2patch process")
            model = await text_store.load_text2patch(conn, stored)
            where = await where_clause(conn, {"collections": [collection]})
            found = await text_store.text_nearest(conn, stored, text_store.embed_text(model, text), where, limit)
            rows = await conn.fetch("SELECT id, content->'properties'->'eofusion:ground_truth' AS gt, "
                                    "content->'assets'->'thumbnail'->>'href' AS quicklook FROM pgstac.items "
                                    "WHERE collection = $1 AND id = ANY($2::text[])", collection,
                                    [n.item_id for n in found])
        finally:
            await conn.close()
        extra = {r["id"]: r for r in rows}

        def ground_truth(item: str) -> list[str]:
            import json

            raw = extra[item]["gt"] if item in extra else None
            return list(json.loads(raw)) if isinstance(raw, str) else list(raw or [])

        return {"collection": collection, "text": text, "model": str(stored.id), "model_item": stored.stac_item_id,
                "results": [{"collection": n.collection, "item": n.item_id, "distance": n.distance,
                             "similarity": 1.0 - n.distance, "ground_truth": ground_truth(n.item_id),
                             "quicklook": extra[n.item_id]["quicklook"] if n.item_id in extra else None}
                            for n in found]}
