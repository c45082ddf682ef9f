"""The static embedder distilled from MiniLM: its table, its vectors on real CrisisLex posts, and a collection
ingested with it through the CLI and searched with late-fusion-search (real database)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from catalog import tweet_search
from catalog.db import connect
from catalog.tweets import recorded_embedder
from eofusion.config import Settings
from eofusion.readers.tweets import IngestReport, Tweet, read_crisislex
from eofusion.social.embedding import (
    EMBEDDER_ALIASES,
    MODEL_NAME,
    STATIC_MODEL_NAME,
    TextEmbedder,
    _model,
    embedder_names,
    get_embedder,
    static_table_path,
)
from eofusion.social.static_embedding import MAX_TOKENS, distill_token_vectors, pool, sif_table
from plugins.social import LateFusionSearchProcessor
from tests.conftest import ROOT, data_path
from tests.numerics import assert_unit_norm

T26 = data_path("crisislex") / "CrisisLexT26"


def _posts(event: str, n: int) -> list[Tweet]:
    tweets = list(read_crisislex(T26 / event, report=IngestReport()))
    assert len(tweets) >= n
    return tweets[:n]


def test_pool_sums_token_rows_and_normalises() -> None:
    table = np.array([[1, 0, 0], [0, 2, 0], [0, 0, 3], [1, 1, 0]], dtype=np.float32)
    got = pool(table, [[0, 1], [2], [], [3, 3, 0]])
    np.testing.assert_allclose(got[0], np.array([1, 2, 0]) / np.sqrt(5), rtol=1e-6)
    np.testing.assert_allclose(got[1], [0, 0, 1])
    assert not got[2].any()  # no token: a zero vector, not NaN
    np.testing.assert_allclose(got[3], np.array([3, 2, 0]) / np.sqrt(13), rtol=1e-6)
    # A pathological text counts its first MAX_TOKENS tokens only.
    long = pool(table, [[0] * MAX_TOKENS + [1] * 10])
    np.testing.assert_allclose(long[0], [1, 0, 0])


def test_sif_table_centres_on_real_tokens_and_weights_frequent_ones_less() -> None:
    rng = np.random.default_rng(0)
    vecs = rng.normal(3.0, 1.0, size=(1000, 8))
    real = np.ones(1000, bool)
    real[:5] = False  # special tokens do not move the centre
    vecs[:5] = 1e6
    table = sif_table(vecs, real)
    weights = np.linalg.norm(table, axis=1) / np.linalg.norm(vecs - vecs[5:].mean(axis=0), axis=1)
    assert np.all(np.diff(weights[5:]) > 0)  # later (rarer) tokens weigh more
    zipf = (1 / np.arange(2, 1002)) / (1 / np.arange(2, 1002)).sum()
    np.testing.assert_allclose(weights, 1e-4 / (1e-4 + zipf), rtol=1e-5)
    np.testing.assert_allclose((table[5:] / weights[5:, None]).mean(axis=0), 0, atol=1e-5)
    with pytest.raises(ValueError, match="no real token"):
        sif_table(vecs, np.zeros(1000, bool))


def test_the_cached_table_is_the_centred_weighted_distillation_of_minilm() -> None:
    """Rows of the table in use, undone (row / weight + centre), equal MiniLM's output for each token alone."""
    table = _model(STATIC_MODEL_NAME).table
    teacher = _model(MODEL_NAME)
    tok = teacher.tokenizer
    assert table.shape == (tok.vocab_size, 384)
    assert static_table_path(Settings.from_env().data_dir / "cache").exists()
    ids = np.array([tok.convert_tokens_to_ids(w) for w in ("flood", "river", "rain", "alluvione", "##s", "the")])
    raw = distill_token_vectors(teacher[0].auto_model, ids, tok.cls_token_id, tok.sep_token_id)
    ranks = np.arange(2, tok.vocab_size + 2, dtype=np.float64)
    p = (1 / ranks) / (1 / ranks).sum()
    weights = 1e-4 / (1e-4 + p)
    centres = raw - table[ids] / weights[ids, None]  # the same centre for every token
    np.testing.assert_allclose(centres, np.broadcast_to(centres[0], centres.shape), atol=2e-4)


def test_static_vectors_of_real_posts_are_batch_free_and_keep_minilms_neighbourhoods() -> None:
    flood = _posts("2013_Sardinia_floods", 150)
    bombing = _posts("2013_Boston_bombings", 150)
    texts = [t.text for t in flood + bombing]
    static = TextEmbedder(STATIC_MODEL_NAME)
    vecs = static.embed(texts)
    assert_unit_norm(vecs, axis=1)
    # A post gets the same vector alone as in any batch (stored post = query), bit for bit.
    alone = np.stack([static.embed([x])[0] for x in texts[::25]])
    assert np.array_equal(alone, vecs[::25])
    assert np.array_equal(static.embed(texts[::-1])[::-1], vecs)
    # Same-event posts are nearer than other-event posts, as with the transformer it was distilled from.
    sims = vecs @ vecs.T
    within = (sims[:150, :150].mean() + sims[150:, 150:].mean()) / 2
    assert within > sims[:150, 150:].mean() + 0.05
    # Its pairwise similarities rank pairs as MiniLM's do (Spearman over all pairs; 0 for an unrelated table).
    teacher = TextEmbedder(MODEL_NAME).embed(texts)
    upper = np.triu_indices(len(texts), 1)
    a, b = sims[upper], (teacher @ teacher.T)[upper]
    rho = np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1]
    assert rho > 0.4


def test_registry_and_cli_names() -> None:
    assert STATIC_MODEL_NAME in embedder_names() and get_embedder(STATIC_MODEL_NAME).name == STATIC_MODEL_NAME
    assert EMBEDDER_ALIASES["static"] == STATIC_MODEL_NAME


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=600)


def test_cli_ingest_with_the_static_embedder_and_late_fusion_search(db_url: str) -> None:
    event = T26 / "2013_Sardinia_floods"
    env = {"EOFUSION_DATABASE_URL": db_url}
    with connect(db_url) as conn:
        conn.execute("DELETE FROM eofusion.tweets WHERE collection = 'emb-static'")
        conn.execute("DELETE FROM eofusion.tweet_collections WHERE collection = 'emb-static'")
    bad = _cli("ingest", "tweets", "crisislex", str(event), "--collection", "emb-static", "--embedder", "word2vec",
               "--no-images", env=env)
    assert bad.returncode != 0 and "--embedder" in bad.stderr and "word2vec" in bad.stderr and "static" in bad.stderr
    done = _cli("ingest", "tweets", "crisislex", str(event), "--collection", "emb-static", "--embedder", "static",
                "--no-images", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["stored"] > 150
    with connect(db_url) as conn:
        assert recorded_embedder(conn, "emb-static") == STATIC_MODEL_NAME
        rows = conn.execute("SELECT text, embedding::real[] FROM eofusion.tweets WHERE collection = 'emb-static' "
                            "AND embedding IS NOT NULL ORDER BY id").fetchall()
    assert len(rows) == report["stored"]
    texts, stored = [r[0] for r in rows], np.asarray([r[1] for r in rows], dtype=np.float32)
    np.testing.assert_allclose(stored, TextEmbedder(STATIC_MODEL_NAME).embed(texts), atol=1e-6)
    # A free-text query is embedded by the collection's recorded (static) embedder: the post finds itself first.
    proc = LateFusionSearchProcessor({"name": "late-fusion-search", "database_url": db_url})
    query = texts[11]
    _, out = proc.execute({"collection": "emb-static", "text": query, "modalities": ["embedding"], "limit": 5,
                           "depth": 20})
    with connect(db_url) as conn:
        exact = tweet_search.embedding(conn, "emb-static", TextEmbedder(STATIC_MODEL_NAME).embed([query])[0], 20)
    assert exact.scores[0] > 0.9999
    assert out["per_modality"]["embedding"] == list(exact.ids[:5])
