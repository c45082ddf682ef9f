"""Re-embedding a collection with another text embedder (real database): staged, resumable after an
interruption, swapped in one transaction, and followed by ingests that still hold the old embedder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from catalog.db import connect
from catalog.tweet_search import EmbedderMismatchError, store_embeddings
from catalog.tweets import ingest_tweets, recorded_embedder, reembed_collection
from eofusion.readers.tweets import IngestReport, Tweet, read_crisislex
from eofusion.social.embedding import INT8_MODEL_NAME, STATIC_MODEL_NAME, TextEmbedder
from plugins.social import LateFusionSearchProcessor
from tests.conftest import ROOT, data_path

EVENT = data_path("crisislex") / "CrisisLexT26" / "2013_Sardinia_floods"
COLLECTION = "emb-reembed"


class Interrupted(Exception):
    pass


def _tweets(n: int) -> list[Tweet]:
    tweets = list(read_crisislex(EVENT, report=IngestReport()))
    assert len(tweets) >= n
    return tweets[:n]


def _stored(db_url: str) -> tuple[list[str], np.ndarray]:
    with connect(db_url) as conn:
        rows = conn.execute("SELECT text, embedding::real[] FROM eofusion.tweets WHERE collection = %s ORDER BY id",
                            (COLLECTION,)).fetchall()
    return [r[0] for r in rows], np.asarray([r[1] for r in rows], dtype=np.float32)


def _staged(db_url: str) -> list[str]:
    with connect(db_url) as conn:
        return [r[0] for r in conn.execute("SELECT model FROM eofusion.tweet_reembedding WHERE collection = %s",
                                           (COLLECTION,))]


def _cli(*args: str, db_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "EOFUSION_DATABASE_URL": db_url}, timeout=600)


def test_reembedding_is_staged_resumable_and_swapped_at_once(db_url: str) -> None:
    tweets = _tweets(241)
    static, int8 = TextEmbedder(STATIC_MODEL_NAME), TextEmbedder(INT8_MODEL_NAME)
    with connect(db_url) as conn:
        for table in ("tweets", "tweet_collections", "tweet_reembedding"):
            conn.execute(f"DELETE FROM eofusion.{table} WHERE collection = %s", (COLLECTION,))
    assert ingest_tweets(db_url, tweets[:200], COLLECTION, batch_size=100, embedder=static).embedded == 200

    def stop_after_first_batch(done: int) -> None:
        raise Interrupted(done)

    with pytest.raises(Interrupted):
        reembed_collection(db_url, COLLECTION, int8, batch_size=60, progress=stop_after_first_batch)
    # Interrupted: queries still see the static vectors and model only; one batch is staged.
    texts, vecs = _stored(db_url)
    with connect(db_url) as conn:
        assert recorded_embedder(conn, COLLECTION) == STATIC_MODEL_NAME
    np.testing.assert_allclose(vecs, static.embed(texts), atol=1e-6)
    assert _staged(db_url) == [INT8_MODEL_NAME] * 60

    # Posts stored meanwhile (not embedded yet) are embedded in the swap.
    assert ingest_tweets(db_url, tweets[200:240], COLLECTION).stored == 40
    assert reembed_collection(db_url, COLLECTION, int8, batch_size=60) == 240
    texts, vecs = _stored(db_url)
    assert len(texts) == 240
    np.testing.assert_allclose(vecs, int8.embed(texts), atol=1e-6)
    with connect(db_url) as conn:
        assert recorded_embedder(conn, COLLECTION) == INT8_MODEL_NAME
        # Vectors of the old model are refused now, and nothing is written.
        before = conn.execute("SELECT embedding::text FROM eofusion.tweets WHERE collection = %s AND id = %s",
                              (COLLECTION, tweets[0].id)).fetchone()
        with pytest.raises(EmbedderMismatchError, match="embedded by"):
            store_embeddings(conn, COLLECTION, [(tweets[0].id, tweets[0].text)], static.embed([tweets[0].text]),
                             STATIC_MODEL_NAME)
        conn.rollback()
        after = conn.execute("SELECT embedding::text FROM eofusion.tweets WHERE collection = %s AND id = %s",
                             (COLLECTION, tweets[0].id)).fetchone()
        assert before == after
    assert _staged(db_url) == []
    assert reembed_collection(db_url, COLLECTION, int8) == 0  # already this model

    # An ingest that still holds the static embedder follows the collection's new model.
    assert ingest_tweets(db_url, tweets[240:241], COLLECTION, embedder=static).embedded == 1
    texts, vecs = _stored(db_url)
    np.testing.assert_allclose(vecs, int8.embed(texts), atol=1e-6)

    # Free-text queries are embedded by the new model: the post finds itself first.
    proc = LateFusionSearchProcessor({"name": "late-fusion-search", "database_url": db_url})
    _, out = proc.execute({"collection": COLLECTION, "text": texts[5], "modalities": ["embedding"], "limit": 3,
                           "depth": 10})
    first = out["per_modality"]["embedding"][0]
    with connect(db_url) as conn:
        row = conn.execute("SELECT text FROM eofusion.tweets WHERE collection = %s AND id = %s",
                           (COLLECTION, first)).fetchone()
    assert row is not None and row[0] == texts[5]


def test_cli_reembed_and_its_errors(db_url: str) -> None:
    with connect(db_url) as conn:
        for table in ("tweets", "tweet_collections", "tweet_reembedding"):
            conn.execute(f"DELETE FROM eofusion.{table} WHERE collection = %s", (COLLECTION + "-cli",))
    ingest_tweets(db_url, _tweets(30), COLLECTION + "-cli", embedder=TextEmbedder(INT8_MODEL_NAME))
    done = _cli("reembed", COLLECTION + "-cli", "--embedder", "static", db_url=db_url)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"collection": COLLECTION + "-cli", "from": INT8_MODEL_NAME, "embedder": STATIC_MODEL_NAME,
                      "embedded": 30}
    bad = _cli("reembed", COLLECTION + "-cli", "--embedder", "glove", db_url=db_url)
    assert bad.returncode != 0 and "glove" in bad.stderr and "static" in bad.stderr
    missing = _cli("reembed", "no-such-posts", "--embedder", "int8", db_url=db_url)
    assert missing.returncode != 0 and "'no-such-posts' has no posts" in missing.stderr


def test_posts_stored_during_the_reembedding_are_embedded_in_the_swap(db_url: str) -> None:
    collection = COLLECTION + "-late"
    tweets = sorted(_tweets(110), key=lambda t: t.id)
    late, early = tweets[:10], tweets[10:]  # the late posts sort before every staged one: keyset paging skips them
    with connect(db_url) as conn:
        for table in ("tweets", "tweet_collections", "tweet_reembedding"):
            conn.execute(f"DELETE FROM eofusion.{table} WHERE collection = %s", (collection,))
    ingest_tweets(db_url, early, collection, embedder=TextEmbedder(STATIC_MODEL_NAME))
    calls: list[int] = []

    def ingest_meanwhile(done: int) -> None:
        if not calls:
            assert ingest_tweets(db_url, late, collection).stored == 10
        calls.append(done)

    int8 = TextEmbedder(INT8_MODEL_NAME)
    assert reembed_collection(db_url, collection, int8, batch_size=30, progress=ingest_meanwhile) == 110
    assert calls == [30, 60, 90, 100]
    with connect(db_url) as conn:
        rows = conn.execute("SELECT text, embedding::real[] FROM eofusion.tweets WHERE collection = %s ORDER BY id",
                            (collection,)).fetchall()
        assert recorded_embedder(conn, collection) == INT8_MODEL_NAME
    assert len(rows) == 110 and all(r[1] is not None for r in rows)
    np.testing.assert_allclose(np.asarray([r[1] for r in rows], dtype=np.float32), int8.embed([r[0] for r in rows]),
                               atol=1e-6)
