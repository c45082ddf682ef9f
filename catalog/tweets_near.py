"""Posts near patches and patches near posts: one spatial (and temporal) join, in three shapes.

A post is near a patch when it lies within ``radius_m`` of the patch footprint (geography distance) and, unless
``days`` is 0, was posted within ``days`` of the patch's acquisition time (its interval, widened). The patches are
one item, the patches annotated (or ground-truthed) with a label or one of its children, or the patches near given
posts. Statements are composed with :mod:`psycopg.sql`, never from strings of input.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from catalog.labels import get_label
from catalog.load import item_exists
from eofusion.errors import InvalidInput, NotFound


@dataclass(frozen=True)
class NearQuery:
    """What "near" means for one request.

    Attributes:
        collection: The patches' collection.
        tweet_collection: The posts' collection.
        radius_m: Distance from the patch footprint, metres.
        days: Days around the patch's acquisition time; 0 = any time.
        limit: Pairs returned, nearest first.
        text: Words the post must hold (any of them); ``None`` = no word filter.
    """

    collection: str
    tweet_collection: str
    radius_m: float
    days: float
    limit: int
    text: str | None = None


@dataclass(frozen=True)
class PatchNearPost:
    """A (patch, post) pair of :func:`patches_near_posts`."""

    patch: str
    tweet: str
    distance_km: float


@dataclass(frozen=True)
class PostNearPatch:
    """A (post, patch) pair of :func:`posts_near_patch` / :func:`posts_near_label`, with the post's fields."""

    tweet: str
    patch: str
    distance_km: float
    text: str
    datetime: datetime | None
    lon: float | None
    lat: float | None


_TIMING = sql.SQL("(%(anytime)s OR t.datetime BETWEEN coalesce(i.datetime, i.end_datetime) - %(days)s "
                  "AND coalesce(i.end_datetime, i.datetime) + %(days)s)")
_WORDS = sql.SQL("t.tsv @@ NULLIF(replace(plainto_tsquery('simple', %(text)s)::text, '&', '|'), '')::tsquery")
# Patches annotated, or ground-truthed, with the label or a child of it.
_LABELLED = sql.SQL(
    "i.id IN (SELECT item_id FROM eofusion.annotations a JOIN eofusion.labels l ON l.id = a.label_id "
    "LEFT JOIN eofusion.labels p ON p.id = l.parent_id WHERE a.collection = %(c)s "
    "AND (lower(l.path) = lower(%(label)s) OR lower(p.path) = lower(%(label)s)) UNION "
    "SELECT item_id FROM eofusion.ground_truth g JOIN eofusion.labels l ON l.id = g.label_id "
    "LEFT JOIN eofusion.labels p ON p.id = l.parent_id WHERE g.collection = %(c)s "
    "AND (lower(l.path) = lower(%(label)s) OR lower(p.path) = lower(%(label)s)))")


def _args(q: NearQuery, **extra: Any) -> dict[str, Any]:
    return {"c": q.collection, "tc": q.tweet_collection, "r": q.radius_m, "limit": q.limit, "text": q.text,
            "days": timedelta(days=q.days), "anytime": q.days == 0, **extra}


def patches_near_posts(conn: psycopg.Connection, q: NearQuery, post_ids: list[str]) -> list[PatchNearPost]:
    """Patches near each of the given posts, nearest first."""
    rows = conn.execute(sql.SQL(
        "SELECT i.id, t.id, ST_DistanceSphere(i.geometry, t.geometry) / 1000 AS km FROM eofusion.tweets t "
        "JOIN pgstac.items i ON i.collection = %(c)s "
        "AND ST_DWithin(i.geometry::geography, t.geometry::geography, %(r)s) "
        "WHERE t.collection = %(tc)s AND t.id = ANY(%(ids)s) AND {timing} "
        "AND i.content->'properties'->>'eofusion:kind' = 'patch' ORDER BY km, i.id LIMIT %(limit)s"
    ).format(timing=_TIMING), _args(q, ids=list(post_ids))).fetchall()
    return [PatchNearPost(r[0], r[1], float(r[2])) for r in rows]


def _posts_near(conn: psycopg.Connection, q: NearQuery, patches: sql.Composable, args: dict[str, Any]
                ) -> list[PostNearPatch]:
    words = sql.SQL("AND ") + _WORDS if q.text else sql.SQL("")
    rows = conn.execute(sql.SQL(
        "SELECT t.id, i.id, ST_DistanceSphere(i.geometry, t.geometry) / 1000 AS km, t.text, t.datetime, "
        "ST_X(t.geometry), ST_Y(t.geometry) FROM pgstac.items i JOIN eofusion.tweets t ON "
        "t.collection = %(tc)s AND ST_DWithin(i.geometry::geography, t.geometry::geography, %(r)s) "
        "WHERE i.collection = %(c)s AND {patches} AND {timing} {words} ORDER BY km, t.id LIMIT %(limit)s"
    ).format(patches=patches, timing=_TIMING, words=words), args).fetchall()
    return [PostNearPatch(r[0], r[1], float(r[2]), r[3], r[4], r[5], r[6]) for r in rows]


def posts_near_patch(conn: psycopg.Connection, q: NearQuery, item: str) -> list[PostNearPatch]:
    """Posts near one patch, nearest first.

    Raises:
        NotFound: no such item in the collection.
    """
    if not item_exists(conn, q.collection, item):
        raise NotFound(f"no item {item!r} in collection {q.collection!r}")
    return _posts_near(conn, q, sql.SQL("i.id = %(item)s"), _args(q, item=item))


def posts_near_label(conn: psycopg.Connection, q: NearQuery, label: str) -> list[PostNearPatch]:
    """Posts near the patches annotated (or ground-truthed) with ``label`` or one of its children.

    Raises:
        InvalidInput: a label that is not in the catalogue.
    """
    found = get_label(conn, label)
    if found is None:
        raise InvalidInput(f"label {label!r} is not in the catalogue")
    return _posts_near(conn, q, _LABELLED, _args(q, label=found.path))
