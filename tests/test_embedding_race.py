"""A post re-ingested with a new text while its old text is being embedded keeps no vector of the old text
(real database): the second stage, the ingest's own embedding and a re-embedding all check the text they embedded.

The race is made deterministic: the embedder re-ingests one post with a new text in the middle of its ``embed``
call, the moment a concurrent ingest could do it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from catalog.db import connect
from catalog.tweets import embed_collection, ingest_tweets, recorded_embedder, reembed_collection
from eofusion.readers.tweets import Tweet
from eofusion.social.embedding import INT8_MODEL_NAME, STATIC_MODEL_NAME, TextEmbedder
from tests.test_reembed import _tweets

NEW_TEXT = "Water over the road at the bridge, the river keeps rising"


@dataclasses.dataclass
class ReingestWhileEmbedding:
    """A real embedder that, during its first ``embed`` call, stores ``changed`` (same id, a new text)."""

    inner: TextEmbedder
    db_url: str
    collection: str
    changed: Tweet
    calls: int = 0

    @property
    def name(self) -> str:
        return self.inner.name

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.calls += 1
        if self.calls == 1:
            assert ingest_tweets(self.db_url, [self.changed], self.collection).stored == 1
        return self.inner.embed(list(texts))


def _fresh(db_url: str, collection: str) -> None:
    with connect(db_url) as conn:
        for table in ("tweets", "tweet_collections", "tweet_reembedding"):
            conn.execute(f"DELETE FROM eofusion.{table} WHERE collection = %s", (collection,))


def _vectors(db_url: str, collection: str) -> dict[str, tuple[str, np.ndarray | None]]:
    with connect(db_url) as conn:
        rows = conn.execute("SELECT id, text, embedding::real[] FROM eofusion.tweets WHERE collection = %s",
                            (collection,)).fetchall()
    return {r[0]: (r[1], None if r[2] is None else np.asarray(r[2], dtype=np.float32)) for r in rows}


def _assert_each_vector_is_of_its_text(db_url: str, collection: str, embedder: TextEmbedder, old: Tweet,
                                       changed: Tweet) -> None:
    stored = _vectors(db_url, collection)
    assert stored[changed.id][0] == NEW_TEXT
    assert all(v is not None for _, v in stored.values()), "a post was left without a vector"
    ids = sorted(stored)
    got = np.stack([stored[i][1] for i in ids])  # type: ignore[misc]
    # Re-embedding in other batches moves a unit vector by ~1e-6; two different texts are > 0.1 apart.
    np.testing.assert_allclose(got, embedder.embed([stored[i][0] for i in ids]), atol=1e-4)
    old_vector = embedder.embed([old.text])[0]
    assert np.linalg.norm(stored[changed.id][1] - old_vector) > 0.1  # type: ignore[operator]


def test_the_second_stage_keeps_no_vector_of_an_old_text(db_url: str) -> None:
    collection = "emb-race-second-stage"
    _fresh(db_url, collection)
    tweets = _tweets(40)
    assert ingest_tweets(db_url, tweets, collection).stored == 40  # no embedder: the second stage embeds
    changed = dataclasses.replace(tweets[7], text=NEW_TEXT)
    static = TextEmbedder(STATIC_MODEL_NAME)
    racing = ReingestWhileEmbedding(static, db_url, collection, changed)
    assert embed_collection(db_url, collection, racing, batch_size=100) >= 40
    assert racing.calls >= 2  # the changed post came back as still to embed, and was embedded with its new text
    _assert_each_vector_is_of_its_text(db_url, collection, static, tweets[7], changed)


def test_a_reembedding_stages_no_vector_of_an_old_text(db_url: str) -> None:
    collection = "emb-race-reembed"
    _fresh(db_url, collection)
    tweets = _tweets(40)
    static, int8 = TextEmbedder(STATIC_MODEL_NAME), TextEmbedder(INT8_MODEL_NAME)
    assert ingest_tweets(db_url, tweets, collection, embedder=static).embedded == 40
    changed = dataclasses.replace(tweets[3], text=NEW_TEXT)
    racing = ReingestWhileEmbedding(int8, db_url, collection, changed)
    reembed_collection(db_url, collection, racing, batch_size=100)
    with connect(db_url) as conn:
        assert recorded_embedder(conn, collection) == INT8_MODEL_NAME
    _assert_each_vector_is_of_its_text(db_url, collection, int8, tweets[3], changed)
