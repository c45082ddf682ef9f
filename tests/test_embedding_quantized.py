"""The int8 MiniLM embedder on real CrisisLex posts: agreement with the float model, the registry, and
collections that keep the embedder they were filled with (ingest and late-fusion queries, real database)."""

from __future__ import annotations

import numpy as np
import pytest

from catalog import tweet_search
from catalog.db import connect
from catalog.tweets import embed_collection, ingest_tweets, recorded_embedder
from eofusion.readers.tweets import IngestReport, Tweet, read_crisislex
from eofusion.social.embedding import (
    DEFAULT_MODEL,
    E5_MODEL_NAME,
    INT8_MAX_SEQ_LENGTH,
    INT8_MODEL_NAME,
    MODEL_NAME,
    MULTILINGUAL_STATIC_MODEL_NAME,
    STATIC_MODEL_NAME,
    TextEmbedder,
    UnknownEmbedderError,
    _model,
    embedder_names,
    get_embedder,
    torch_threads,
)
from plugins import base
from plugins.social import LateFusionSearchProcessor
from tests.conftest import data_path
from tests.numerics import assert_unit_norm

EVENT = data_path("crisislex") / "CrisisLexT26" / "2013_Sardinia_floods"  # Italian and English posts


def _tweets(n: int) -> list[Tweet]:
    """The event's first ``n`` posts, or all of them when it holds fewer (the fixture's 315 for ``n`` = 1000)."""
    tweets = list(read_crisislex(EVENT, report=IngestReport()))
    assert len(tweets) >= min(n, 300)
    return tweets[:n]


def test_int8_vectors_agree_with_the_float_model_on_real_posts() -> None:
    texts = sorted({t.text for t in _tweets(300)})
    float_vecs = TextEmbedder(MODEL_NAME).embed(texts)
    int8_vecs = TextEmbedder(INT8_MODEL_NAME).embed(texts)
    assert int8_vecs.shape == float_vecs.shape == (len(texts), 384)
    assert_unit_norm(int8_vecs, axis=1)
    cos = np.einsum("ij,ij->i", float_vecs, int8_vecs)
    # bench/text_embedding.py over all 25k CrisisLexT26 texts: mean 0.990, min 0.97 (7-bit activations: 0.97 / 0.92).
    assert cos.mean() > 0.985 and cos.min() > 0.95, (cos.mean(), cos.min())
    assert not np.allclose(float_vecs, int8_vecs, atol=1e-3)  # really another model, not the float one reused
    # Neighbours (near-duplicate posts make the very nearest one a coin toss): the float model's nearest
    # other post is among the int8 model's five nearest, and the top tens mostly overlap (0.99, 0.85 here).
    sim_f, sim_q = float_vecs @ float_vecs.T, int8_vecs @ int8_vecs.T
    np.fill_diagonal(sim_f, -1)
    np.fill_diagonal(sim_q, -1)
    top_q = np.argsort(-sim_q, axis=1)
    assert np.mean([sim_f[i].argmax() in top_q[i, :5] for i in range(len(texts))]) > 0.95
    top_f = np.argsort(-sim_f, axis=1)[:, :10]
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top_f, top_q[:, :10], strict=True)]) > 0.75


def test_worker_threads_give_the_same_vectors_and_use_threads() -> None:
    texts = sorted({t.text for t in _tweets(200)})
    seen: set[str] = set()
    one = TextEmbedder(INT8_MODEL_NAME).embed(texts)
    with torch_threads(1):
        import threading

        real_run = threading.Thread.run

        def spy(self: threading.Thread) -> None:
            seen.add(self.name)
            real_run(self)

        threading.Thread.run = spy  # type: ignore[method-assign]
        try:
            two = TextEmbedder(INT8_MODEL_NAME, workers=2).embed(texts)
        finally:
            threading.Thread.run = real_run  # type: ignore[method-assign]
        float_two = TextEmbedder(MODEL_NAME, workers=2).embed(texts)
    assert np.array_equal(one, two)  # one text at a time: splitting the call changes nothing
    assert sum(name.startswith("text-embedding") for name in seen) == 2
    np.testing.assert_allclose(float_two, TextEmbedder(MODEL_NAME).embed(texts), atol=1e-5)  # batches re-cut
    assert TextEmbedder(INT8_MODEL_NAME, workers=4).embed(texts[:3]).shape == (3, 384)  # too few to split


def test_the_int8_model_is_quantized_and_keeps_posts_whole() -> None:
    model = _model(INT8_MODEL_NAME)
    layers = [m._get_name() for m in model.modules()]
    # 6 per block of 6, and the (unused) BERT pooler's: none left in float.
    assert "Linear" not in layers and layers.count("FullRangeDynamicQuantizedLinear") == 6 * 6 + 1
    assert model.max_seq_length == INT8_MAX_SEQ_LENGTH
    lengths = [len(ids) for ids in model.tokenizer([t.text for t in _tweets(1000)])["input_ids"]]
    assert max(lengths) <= INT8_MAX_SEQ_LENGTH  # real posts are not cut
    assert _model(MODEL_NAME) is not model and "Linear" in [type(m).__name__ for m in _model(MODEL_NAME).modules()]


def test_registry_names_and_unknown_embedders() -> None:
    assert set(embedder_names()) == {MODEL_NAME, INT8_MODEL_NAME, STATIC_MODEL_NAME, E5_MODEL_NAME,
                                     MULTILINGUAL_STATIC_MODEL_NAME}
    assert DEFAULT_MODEL == INT8_MODEL_NAME
    assert TextEmbedder().name == INT8_MODEL_NAME and get_embedder(MODEL_NAME).name == MODEL_NAME
    with pytest.raises(UnknownEmbedderError, match="no text embedder named"):
        get_embedder("sentence-transformers/all-mpnet-base-v2")


@pytest.fixture(scope="module")
def collections(db_url: str) -> dict[str, list[Tweet]]:
    """A collection embedded by the float model (as before the int8 one existed) and one by the default."""
    tweets = _tweets(240)
    with connect(db_url) as conn:
        conn.execute("DELETE FROM eofusion.tweets WHERE collection IN ('emb-float', 'emb-int8')")
        conn.execute("DELETE FROM eofusion.tweet_collections WHERE collection IN ('emb-float', 'emb-int8')")
    first = ingest_tweets(db_url, tweets[:120], "emb-float", batch_size=60, embedder=get_embedder(MODEL_NAME))
    assert first.embedded == 120
    # Later posts of the float collection, ingested with the default (int8) embedder, stay float.
    second = ingest_tweets(db_url, tweets[120:180], "emb-float", batch_size=60, embedder=TextEmbedder())
    assert second.embedded == 60
    ingest_tweets(db_url, tweets[180:], "emb-float")
    assert embed_collection(db_url, "emb-float", TextEmbedder()) == 60
    ingest_tweets(db_url, tweets, "emb-int8", batch_size=60, embedder=TextEmbedder())
    return {"emb-float": tweets, "emb-int8": tweets}


def _stored(db_url: str, collection: str) -> tuple[list[str], np.ndarray]:
    with connect(db_url) as conn:
        rows = conn.execute("SELECT text, embedding::real[] FROM eofusion.tweets WHERE collection = %s ORDER BY id",
                            (collection,)).fetchall()
    return [r[0] for r in rows], np.asarray([r[1] for r in rows], dtype=np.float32)


def test_a_collection_keeps_the_embedder_it_was_filled_with(collections: dict, db_url: str) -> None:
    with connect(db_url) as conn:
        assert recorded_embedder(conn, "emb-float") == MODEL_NAME
        assert recorded_embedder(conn, "emb-int8") == INT8_MODEL_NAME
    for collection, name in (("emb-float", MODEL_NAME), ("emb-int8", INT8_MODEL_NAME)):
        texts, stored = _stored(db_url, collection)
        assert len(texts) == 240
        fresh = get_embedder(name).embed(texts)  # every stored vector, late posts included, is this model's
        assert np.einsum("ij,ij->i", stored, fresh).min() > 0.9999


def test_free_text_queries_use_the_collections_embedder_through_a_pooled_connection(
        collections: dict, db_url: str) -> None:
    proc = LateFusionSearchProcessor({"name": "late-fusion-search", "database_url": db_url})
    for collection, name in (("emb-float", MODEL_NAME), ("emb-int8", INT8_MODEL_NAME)):
        texts, stored = _stored(db_url, collection)
        query = texts[7]
        _, out = proc.execute({"collection": collection, "text": query, "modalities": ["embedding"], "limit": 5,
                               "depth": 10})
        # The query's vector equals the stored one only when the collection's own embedder made it.
        with connect(db_url) as conn:
            exact = tweet_search.embedding(conn, collection, get_embedder(name).embed([query])[0], 10)
        assert out["per_modality"]["embedding"] == list(exact.ids[:5])
        assert exact.scores[0] > 0.9999
        other = get_embedder(INT8_MODEL_NAME if name == MODEL_NAME else MODEL_NAME).embed([query])[0]
        assert float(stored[7] @ other) < 0.9999
    # Calls share the process's pool: no connection per call.
    assert db_url in base._CONNECTIONS
    with connect(db_url) as conn:
        def backends() -> int:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                               "AND backend_type = 'client backend'").fetchone()
            return int(row[0]) if row else 0

        before = backends()
        for _ in range(5):
            proc.execute({"collection": "emb-int8", "text": "alluvione Olbia", "limit": 5, "depth": 10})
        assert backends() == before


def test_torch_threads_are_set_inside_the_block_and_restored() -> None:
    import torch

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
        vec = TextEmbedder().embed(["Flooding in Olbia, roads closed"])  # the model runs on one thread
    assert torch.get_num_threads() == before and vec.shape == (1, 384)
    with torch_threads(0):  # two cores less the geoparser's is never below one
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
