"""Tweets in PostGIS: one row per post, searchable by text, time and place."""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from numpy.typing import NDArray
from psycopg.types.json import Jsonb

from catalog.db import connect, use_vectors
from eofusion.readers.tweets import Tweet


def upsert_tweets(conn: psycopg.Connection, tweets: list[Tweet], collection: str = "tweets") -> int:
    """Insert or replace tweets of a collection in one batch.

    A replaced post whose text changed loses its embedding, and one whose media changed its photo rows
    (a trigger of migration 0018, so every writer is covered): the embedding and image stages redo them.
    """
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO eofusion.tweets (collection, id, datetime, geometry, text, lang, hashtags, user_hash, media, "
            "event, properties, location_source, location_confidence) VALUES (%s, %s, %s, "
            "CASE WHEN %s::float8 IS NULL THEN NULL ELSE ST_SetSRID(ST_MakePoint(%s, %s), 4326) END, "
            "%s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (collection, id) DO UPDATE SET datetime = EXCLUDED.datetime, geometry = EXCLUDED.geometry, "
            "text = EXCLUDED.text, lang = EXCLUDED.lang, hashtags = EXCLUDED.hashtags, "
            "user_hash = EXCLUDED.user_hash, media = EXCLUDED.media, event = EXCLUDED.event, "
            "properties = EXCLUDED.properties, location_source = EXCLUDED.location_source, "
            "location_confidence = EXCLUDED.location_confidence",
            [(collection, t.id, t.datetime, t.lon, t.lon, t.lat, t.text, t.lang, t.hashtags, t.user_hash,
              Jsonb(t.media), t.event, Jsonb(t.properties), t.location_source, t.location_confidence)
             for t in tweets])
    return len(tweets)


@dataclass
class TweetIngestReport:
    """Counts of one tweet ingest (the reader's skips are in the reader's report)."""

    stored: int = 0
    located: int = 0
    geotagged: int = 0
    embedded: int = 0


class _EmbedWorker:
    """Embeds stored batches in a thread while the caller's generator (geoparsing) makes the next ones.

    The model's forward pass releases the GIL, so geoparsing and embedding overlap (the embedder
    runs one thread per core, see :func:`on_every_core`); the queue is short so that memory stays
    bounded when embedding is the slower stage.
    """

    def __init__(self, database_url: str, collection: str, embedder: Any) -> None:
        self.database_url, self.collection, self.embedder = database_url, collection, embedder
        self.done = 0
        self.error: BaseException | None = None
        self._queue: queue.Queue[list[tuple[str, str]] | None] = queue.Queue(maxsize=2)
        self._thread = threading.Thread(target=self._run, name="tweet-embedding", daemon=True)
        self._thread.start()

    def put(self, rows: list[tuple[str, str]]) -> None:
        """Queue the (id, text) rows of a stored batch; raises the thread's error, if any."""
        if self.error is not None:
            raise self.error
        self._queue.put(rows)

    def close(self) -> int:
        """Wait for the queued batches; the number embedded."""
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.done

    def _run(self) -> None:
        from eofusion.social.embedding import torch_threads

        try:
            # One embedding thread per core, each on one torch thread (see TextEmbedder.workers); the caller's
            # geoparsing takes a small share of a core beside them.
            with torch_threads(1), connect(self.database_url) as conn:
                self.embedder = on_every_core(collection_embedder(conn, self.collection, self.embedder))
                while (rows := self._queue.get()) is not None:
                    self.embedder = embed_and_store(conn, self.collection, self.embedder, rows)
                    self.done += len(rows)
        except BaseException as err:  # re-raised in the caller's thread
            self.error = err
            while self._queue.get() is not None:  # let a blocked put() go on to see the error
                pass


def post_count(conn: psycopg.Connection, collection: str) -> int:
    """Posts stored in a collection (0 for an unknown one)."""
    row = conn.execute("SELECT count(*) FROM eofusion.tweets WHERE collection = %s", (collection,)).fetchone()
    return int(row[0]) if row else 0


def recorded_embedder(conn: psycopg.Connection, collection: str) -> str | None:
    """The embedder name a collection recorded, when some of its posts are embedded."""
    row = conn.execute(
        "SELECT c.embedding_model FROM eofusion.tweet_collections c WHERE c.collection = %s AND EXISTS "
        "(SELECT 1 FROM eofusion.tweets t WHERE t.collection = c.collection AND t.embedding IS NOT NULL)",
        (collection,)).fetchone()
    return row[0] if row else None


def collection_embedder(conn: psycopg.Connection, collection: str, embedder: Any) -> Any:
    """``embedder``, unless the collection is already embedded by another one: then that one.

    A collection's vectors and its queries must all come from one embedder (the float and int8
    MiniLM give different vectors), so posts added to a collection embedded by the float model
    are embedded by the float model too.
    """
    from eofusion.social.embedding import get_embedder

    recorded = recorded_embedder(conn, collection)
    if recorded is None or recorded == embedder.name:
        return embedder
    return get_embedder(recorded)


def on_every_core(embedder: Any) -> Any:
    """``embedder`` with one worker thread per core this process may use (a ``TextEmbedder``; others as given)."""
    if isinstance(getattr(embedder, "workers", None), int):
        return dataclasses.replace(embedder, workers=max(1, len(os.sched_getaffinity(0))))
    return embedder


def embed_and_store(conn: psycopg.Connection, collection: str, embedder: Any, rows: list[tuple[str, str]]) -> Any:
    """Embed (id, text) rows and store the vectors in one committed transaction.

    If the collection turns out to be embedded by another model (re-embedded, or filled by a concurrent ingest
    with another embedder, since the caller chose ``embedder``), the rows are embedded again by that model.

    Returns:
        The embedder that was used: the caller's, or the collection's own.
    """
    from catalog.tweet_search import EmbedderMismatchError, store_embeddings

    for _ in range(3):  # each retry follows a model change another process committed meanwhile
        _, vectors = embed_texts(embedder, rows)
        try:
            store_embeddings(conn, collection, rows, vectors, embedder.name)
        except EmbedderMismatchError:
            conn.rollback()
            embedder = on_every_core(collection_embedder(conn, collection, embedder))
            conn.rollback()  # end the read transaction: the next attempt locks afresh
            continue
        conn.commit()
        return embedder
    raise RuntimeError(f"the text embedder of collection {collection!r} keeps changing: three attempts failed")


def _stage(conn: psycopg.Connection, collection: str, model: str, rows: list[tuple[str, str]],
           vectors: NDArray[np.float32]) -> None:
    """Stage the vectors of (id, text) rows; a post whose text changed since it was read stays unstaged."""
    use_vectors(conn)
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO eofusion.tweet_reembedding (collection, id, model, embedding) "
                        "SELECT t.collection, t.id, %s, %s FROM eofusion.tweets t "
                        "WHERE t.collection = %s AND t.id = %s AND t.text = %s "
                        "ON CONFLICT (collection, id) DO UPDATE SET model = EXCLUDED.model, "
                        "embedding = EXCLUDED.embedding",
                        [(model, v, collection, i, text) for (i, text), v in zip(rows, vectors, strict=True)])


# Posts without a staged vector, after an id (keyset paging: each batch starts where the last one ended).
_NOT_STAGED = ("SELECT t.id, t.text FROM eofusion.tweets t WHERE t.collection = %s AND t.id > %s AND NOT EXISTS "
               "(SELECT 1 FROM eofusion.tweet_reembedding r WHERE r.collection = t.collection AND r.id = t.id) "
               "ORDER BY t.id LIMIT %s")


def reembed_collection(database_url: str, collection: str, embedder: Any, batch_size: int = 2048,
                       progress: Callable[[int], None] | None = None) -> int:
    """Give every post of a collection the vectors of ``embedder`` and record it as the collection's model.

    New vectors are staged in ``eofusion.tweet_reembedding`` batch by batch (a killed run resumes where it
    stopped), then swapped into the posts together with the recorded model in one transaction, so queries see
    the old vectors and model or the new ones, never a mix. Posts stored meanwhile are embedded in the swap;
    an ingest still embedding with the old model follows the change (:func:`embed_and_store`).

    Args:
        database_url: Database URL.
        collection: The posts' collection.
        embedder: The new embedder (``TextEmbedder``).
        batch_size: Posts per staged batch.
        progress: Called with the number of posts staged so far.

    Returns:
        Posts embedded by ``embedder`` (0 when the collection already records it).
    """
    from catalog.tweet_search import lock_collection
    from eofusion.social.embedding import torch_threads

    with connect(database_url) as conn:
        recorded = recorded_embedder(conn, collection)
    if recorded is None:  # nothing embedded yet: the ordinary second stage
        return embed_collection(database_url, collection, embedder, batch_size, progress)
    if recorded == embedder.name:
        return 0
    embedder = on_every_core(embedder)
    with torch_threads(1), connect(database_url) as conn:
        # Vectors a killed run staged for another model are of no use now.
        conn.execute("DELETE FROM eofusion.tweet_reembedding WHERE collection = %s AND model <> %s",
                     (collection, embedder.name))
        row = conn.execute("SELECT count(*) FROM eofusion.tweet_reembedding WHERE collection = %s",
                           (collection,)).fetchone()
        conn.commit()
        done = _stage_unstaged(conn, collection, embedder, batch_size, int(row[0]) if row else 0, True, progress)
        lock_collection(conn, collection)
        # Posts stored since, under the lock and in the swap's transaction.
        done = _stage_unstaged(conn, collection, embedder, batch_size, done, False)
        conn.execute("UPDATE eofusion.tweets t SET embedding = r.embedding FROM eofusion.tweet_reembedding r "
                     "WHERE t.collection = %s AND r.collection = t.collection AND r.id = t.id", (collection,))
        conn.execute("UPDATE eofusion.tweet_collections SET embedding_model = %s, updated_at = now() "
                     "WHERE collection = %s", (embedder.name, collection))
        conn.execute("DELETE FROM eofusion.tweet_reembedding WHERE collection = %s", (collection,))
        conn.commit()
    return done


def _stage_unstaged(conn: psycopg.Connection, collection: str, embedder: Any, batch_size: int, done: int,
                    commit: bool, progress: Callable[[int], None] | None = None) -> int:
    """Embed and stage every post of the collection without a staged vector, in id order.

    Args:
        commit: Commit each batch (a killed run keeps what it staged); else they stay in the caller's transaction.
        progress: Called with the running count after each batch.

    Returns:
        ``done`` plus the posts staged.
    """
    last = ""  # keyset paging: each batch starts after the last id of the one before
    while rows := [(r[0], r[1]) for r in conn.execute(_NOT_STAGED, (collection, last, batch_size))]:
        _stage(conn, collection, embedder.name, rows, embed_texts(embedder, rows)[1])
        done, last = done + len(rows), rows[-1][0]
        if commit:
            conn.commit()
        if progress:
            progress(done)
    return done


def embed_texts(embedder: Any, rows: list[tuple[str, str]]) -> tuple[list[str], NDArray[np.float32]]:
    """Embed (id, text) rows, each distinct text once: retweets repeat texts verbatim."""
    texts = sorted({text for _, text in rows})
    where = {text: i for i, text in enumerate(texts)}
    vectors = embedder.embed(texts)
    return [i for i, _ in rows], vectors[[where[text] for _, text in rows]]


def ingest_tweets(database_url: str, tweets: Iterable[Tweet], collection: str = "tweets", batch_size: int = 2000,
                  progress: Callable[[int], None] | None = None, embedder: Any | None = None) -> TweetIngestReport:
    """Store posts in batches, one transaction per batch.

    A rerun upserts the same ids; a bad record was already skipped by the reader, so nothing
    stored before is lost.

    Args:
        database_url: The catalogue.
        tweets: Posts (:class:`eofusion.readers.tweets.Tweet`); a generator (e.g. the geoparser's) is consumed
            batch by batch.
        collection: Posts collection.
        batch_size: Tweets per transaction.
        progress: Called with the number stored so far.
        embedder: When given (``TextEmbedder``), each stored batch is embedded in a background
            thread while the next batch is read and geoparsed; otherwise run
            :func:`embed_collection` afterwards. A collection already embedded by another
            embedder keeps its own (:func:`collection_embedder`).

    Returns:
        The counts, ``embedded`` included.
    """
    report = TweetIngestReport()
    batch: list[Tweet] = []
    worker = _EmbedWorker(database_url, collection, embedder) if embedder is not None else None

    def flush() -> None:
        with connect(database_url) as conn, conn.transaction():
            upsert_tweets(conn, batch, collection)
            conn.execute("INSERT INTO eofusion.tweet_collections (collection) VALUES (%s) ON CONFLICT DO NOTHING",
                         (collection,))
        if worker is not None:
            worker.put([(t.id, t.text) for t in batch])
        report.stored += len(batch)
        report.located += sum(t.lon is not None for t in batch)
        report.geotagged += sum(t.location_source == "geotag" for t in batch)
        if progress:
            progress(report.stored)
        batch.clear()

    try:
        for t in tweets:
            batch.append(t)
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
    finally:
        if worker is not None:
            report.embedded = worker.close()
    return report


def embed_collection(database_url: str, collection: str, embedder: Any, batch_size: int = 2048,
                     progress: Callable[[int], None] | None = None) -> int:
    """Second stage: embed the texts of stored tweets that have no embedding yet.

    A collection already embedded by another embedder keeps its own (:func:`collection_embedder`).
    """
    from catalog.tweet_search import without_embedding
    from eofusion.social.embedding import torch_threads

    done = 0
    with torch_threads(1), connect(database_url) as conn:
        embedder = on_every_core(collection_embedder(conn, collection, embedder))  # later changes: embed_and_store
        while todo := without_embedding(conn, collection, batch_size):
            embedder = embed_and_store(conn, collection, embedder, todo)
            done += len(todo)
            if progress:
                progress(done)
    return done
