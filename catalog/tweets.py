"""Tweets in PostGIS: one row per post, searchable by text, time and place."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from catalog.db import connect


@dataclass
class TweetRecord:
    """A post ready to store. ``lon``/``lat`` are WGS84; None when the post has no location."""

    id: str
    text: str
    datetime: datetime | None
    lon: float | None = None
    lat: float | None = None
    lang: str | None = None
    hashtags: list[str] = field(default_factory=list)
    user_hash: str | None = None
    media: list[dict[str, Any]] = field(default_factory=list)
    event: str | None = None
    location_source: str | None = None
    location_confidence: float | None = None
    properties: dict[str, Any] = field(default_factory=dict)


def upsert_tweets(conn: psycopg.Connection, tweets: list[TweetRecord], collection: str = "tweets") -> int:
    """Insert or replace tweets of a collection in one batch."""
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


def ingest_tweets(database_url: str, tweets: Iterable[Any], collection: str = "tweets", batch_size: int = 2000,
                  progress: Callable[[int], None] | None = None) -> TweetIngestReport:
    """Store tweets (objects with a ``to_record()``) in batches, one transaction per batch.

    A rerun upserts the same ids; a bad record was already skipped by the reader, so nothing
    stored before is lost.
    """
    report = TweetIngestReport()
    batch: list[TweetRecord] = []

    def flush() -> None:
        with connect(database_url) as conn, conn.transaction():
            upsert_tweets(conn, batch, collection)
            conn.execute("INSERT INTO eofusion.tweet_collections (collection) VALUES (%s) ON CONFLICT DO NOTHING",
                         (collection,))
        report.stored += len(batch)
        report.located += sum(t.lon is not None for t in batch)
        report.geotagged += sum(t.location_source == "geotag" for t in batch)
        if progress:
            progress(report.stored)
        batch.clear()

    for t in tweets:
        batch.append(t.to_record() if hasattr(t, "to_record") else t)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return report


def embed_collection(database_url: str, collection: str, embedder: Any, batch_size: int = 2048,
                     progress: Callable[[int], None] | None = None) -> int:
    """Second stage: embed the texts of stored tweets that have no embedding yet."""
    from catalog.tweet_search import store_embeddings, without_embedding

    done = 0
    while True:
        with connect(database_url) as conn:
            todo = without_embedding(conn, collection, batch_size)
            if not todo:
                return done
            vectors = embedder.embed([text for _, text in todo])
            store_embeddings(conn, collection, [i for i, _ in todo], vectors, embedder.name)
            conn.commit()
        done += len(todo)
        if progress:
            progress(done)
