"""Tweets in PostGIS: one row per post, searchable by text, time and place."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


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
