"""What the catalogue holds, for the home page: collections with counts and extents, posts, server versions.

Counts are exact (one grouped pass over each table), which suits an installation's front page; extents are
computed from the items' own geometries, because archive collections declare the whole world as their extent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

Bbox = tuple[float, float, float, float]


@dataclass(frozen=True)
class CollectionSummary:
    """One STAC collection as the home page shows it.

    Attributes:
        id: Collection id.
        title: Its title ("" when none).
        description: Its description ("" when none).
        items: Number of items.
        bbox: (west, south, east, north) of its items' geometries in WGS 84, None when it has no item.
        descriptors: Items with a descriptor, per kind (``s1``, ``s2``, ``fused``); kinds without any are left out.
        ground_truth: Items with archive ground truth.
        annotated: Items with at least one accepted annotation.
    """

    id: str
    title: str
    description: str
    items: int
    bbox: Bbox | None
    descriptors: dict[str, int] = field(default_factory=dict)
    ground_truth: int = 0
    annotated: int = 0


@dataclass(frozen=True)
class PostsSummary:
    """One posts collection (``eofusion.tweets``).

    Attributes:
        id: Posts collection id.
        posts: Number of posts.
        located: Posts with a place (geotag or geoparsed).
        bbox: Extent of the located posts, None when none is located.
    """

    id: str
    posts: int
    located: int
    bbox: Bbox | None


def _bbox(row: tuple[float | None, ...]) -> Bbox | None:
    if any(v is None for v in row):
        return None
    w, s, e, n = (float(v) for v in row if v is not None)
    return (w, s, e, n)


_COLLECTIONS_SQL = """
WITH i AS (
    SELECT collection, count(*) AS n, ST_XMin(ST_Extent(geometry)) AS w, ST_YMin(ST_Extent(geometry)) AS s,
           ST_XMax(ST_Extent(geometry)) AS e, ST_YMax(ST_Extent(geometry)) AS n_
    FROM pgstac.items GROUP BY collection),
d AS (SELECT collection, count(s1) AS s1, count(s2) AS s2, count(fused) AS fused
      FROM eofusion.descriptors GROUP BY collection),
g AS (SELECT collection, count(DISTINCT item_id) AS n FROM eofusion.ground_truth GROUP BY collection),
a AS (SELECT collection, count(DISTINCT item_id) AS n FROM eofusion.annotations GROUP BY collection)
SELECT c.id, coalesce(c.content->>'title', ''), coalesce(c.content->>'description', ''), coalesce(i.n, 0),
       i.w, i.s, i.e, i.n_, coalesce(d.s1, 0), coalesce(d.s2, 0), coalesce(d.fused, 0), coalesce(g.n, 0),
       coalesce(a.n, 0)
FROM pgstac.collections c
LEFT JOIN i ON i.collection = c.id
LEFT JOIN d ON d.collection = c.id
LEFT JOIN g ON g.collection = c.id
LEFT JOIN a ON a.collection = c.id
ORDER BY c.id
"""


def collection_summaries(conn: psycopg.Connection) -> list[CollectionSummary]:
    """Every STAC collection with its item count, extent, descriptors, ground truth and annotations.

    Args:
        conn: A connection to the catalogue.

    Returns:
        One summary per collection, sorted by id.
    """
    out = []
    for row in conn.execute(_COLLECTIONS_SQL).fetchall():
        kinds = {"s1": int(row[8]), "s2": int(row[9]), "fused": int(row[10])}
        out.append(CollectionSummary(
            id=row[0], title=row[1], description=row[2], items=int(row[3]), bbox=_bbox(tuple(row[4:8])),
            descriptors={k: v for k, v in kinds.items() if v}, ground_truth=int(row[11]), annotated=int(row[12])))
    return out


def posts_summaries(conn: psycopg.Connection) -> list[PostsSummary]:
    """Every posts collection with its post count, located posts and their extent.

    Args:
        conn: A connection to the catalogue.

    Returns:
        One summary per posts collection holding posts, sorted by id.
    """
    rows = conn.execute(
        "SELECT collection, count(*), count(geometry), ST_XMin(ST_Extent(geometry)), ST_YMin(ST_Extent(geometry)), "
        "ST_XMax(ST_Extent(geometry)), ST_YMax(ST_Extent(geometry)) FROM eofusion.tweets "
        "GROUP BY collection ORDER BY collection").fetchall()
    return [PostsSummary(id=r[0], posts=int(r[1]), located=int(r[2]), bbox=_bbox(tuple(r[3:7]))) for r in rows]


def item_count(conn: psycopg.Connection, collection: str) -> int:
    """Items of one collection (0 for an unknown one).

    Args:
        conn: A connection to the catalogue.
        collection: Collection id.
    """
    row = conn.execute("SELECT count(*) FROM pgstac.items WHERE collection = %s", (collection,)).fetchone()
    return int(row[0]) if row else 0


def item_exists(conn: psycopg.Connection, collection: str, item_id: str) -> bool:
    """Whether an item is stored.

    Args:
        conn: A connection to the catalogue.
        collection: Collection id.
        item_id: Item id.
    """
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM pgstac.items WHERE collection = %s AND id = %s)",
                       (collection, item_id)).fetchone()
    return bool(row and row[0])


def server_versions(conn: psycopg.Connection) -> dict[str, str | None]:
    """The versions ``/healthz`` reports: pgstac's schema and the PostGIS and pgvector extensions.

    Args:
        conn: A connection to the catalogue.

    Returns:
        ``{"pgstac", "pgvector", "postgis"}``; an extension that is not installed is None.
    """
    row = conn.execute("SELECT pgstac.get_version()").fetchone()
    versions: dict[str, str] = dict(conn.execute("SELECT extname, extversion FROM pg_extension "
                                 "WHERE extname IN ('vector', 'postgis')").fetchall())
    return {"pgstac": row[0] if row else None, "pgvector": versions.get("vector"), "postgis": versions.get("postgis")}


_KINDS = ("fused", "s2", "s1")


def sample_item(conn: psycopg.Connection, collection: str, kind: str) -> str | None:
    """The first item (by id) of a collection that has a descriptor of ``kind``: a reference for a similarity query.

    Args:
        conn: A connection to the catalogue.
        collection: Collection id.
        kind: ``fused``, ``s2`` or ``s1``.

    Raises:
        ValueError: an unknown descriptor kind.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown descriptor kind {kind!r}; known: {', '.join(_KINDS)}")
    row = conn.execute(f"SELECT item_id FROM eofusion.descriptors WHERE collection = %s AND {kind} IS NOT NULL "
                       "ORDER BY item_id LIMIT 1", (collection,)).fetchone()
    return str(row[0]) if row else None
