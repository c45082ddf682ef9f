"""Bulk writes into pgstac, inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from pypgstac.load import Loader

from catalog.items import ANNOTATIONS


def upsert_collection(conn: psycopg.Connection, collection: dict[str, Any]) -> None:
    """Create or replace a collection."""
    conn.execute("SELECT pgstac.upsert_collection(%s)", (Jsonb(collection),))


class _CollectionInfo(Loader):  # type: ignore[misc]
    """pypgstac's item formatting (dehydration, partition names), reading collections on our connection."""

    def __init__(self, conn: psycopg.Connection) -> None:
        super().__init__(db=None)  # type: ignore[arg-type]  # only format_item is used: no pypgstac db
        self._conn = conn
        self._collections: dict[str, tuple[dict[str, Any], int, str, int | None]] = {}

    def collection_json(self, collection_id: str) -> tuple[dict[str, Any], int, str, int | None]:
        if collection_id not in self._collections:
            row = self._conn.execute(
                "SELECT b.base_item, c.key, c.partition_trunc, b.base_item_id FROM pgstac.collections c, "
                "pgstac.current_base_item(c.id) b WHERE c.id = %s", (collection_id,)).fetchone()
            if row is None:
                raise ValueError(f"collection {collection_id!r} does not exist")
            self._collections[collection_id] = (row[0], row[1], row[2], row[3])
        return self._collections[collection_id]


def upsert_items(conn: psycopg.Connection, items: Sequence[dict[str, Any]]) -> int:
    """Create or replace items, with the semantics of ``pgstac.upsert_items`` in a few statements.

    pgstac's function dehydrates each item in PL/pgSQL (2 ms per patch item, 90% of its time: 22 s of
    PostgreSQL CPU for one Sentinel-2 tile's 10,790 patches). Here pypgstac's loader code dehydrates them in
    Python (the same algorithm, ~0.1 ms), the rows are copied into a temporary table, and the tail of pgstac's
    upsert runs as it does there: partitions checked, changed rows deleted (locked in a fixed order), rows
    inserted. All inside the caller's transaction, so a failed ingest leaves nothing.

    Raises:
        ValueError: An item without a valid datetime or geometry, or of an unknown collection.
    """
    if not items:
        return 0
    info = _CollectionInfo(conn)
    rows = []
    for item in items:
        try:
            rows.append(info.format_item(item))
        except ValueError:
            raise
        except Exception as err:  # pypgstac raises bare Exceptions for bad items
            raise ValueError(f"item {item.get('id')!r}: {err}") from err
    # One check_partition per partition, over the datetime ranges of its rows (as pgstac's staging trigger does).
    ranges: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        r = ranges.setdefault((row["collection"], row["partition"]), [row["datetime"], row["datetime"],
                                                                       row["end_datetime"], row["end_datetime"]])
        r[0], r[1] = min(r[0], row["datetime"], key=_instant), max(r[1], row["datetime"], key=_instant)
        r[2], r[3] = (min(r[2], row["end_datetime"], key=_instant), max(r[3], row["end_datetime"], key=_instant))
    for (collection, _), (dt0, dt1, edt0, edt1) in sorted(ranges.items()):
        conn.execute("SELECT pgstac.check_partition(%s, tstzrange(%s, %s, '[]'), tstzrange(%s, %s, '[]'))",
                     (collection, dt0, dt1, edt0, edt1))
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS _items_in (LIKE pgstac.items) ON COMMIT DROP")
    conn.execute("TRUNCATE _items_in")
    with conn.cursor().copy("COPY _items_in (id, collection, datetime, end_datetime, geometry, content, private) "
                            "FROM STDIN") as copy:
        for row in rows:
            copy.write_row((row["id"], row["collection"], row["datetime"], row["end_datetime"], row["geometry"],
                            row["content"], row["private"]))
    conn.execute(
        "WITH locked AS (SELECT o.collection, o.id FROM _items_in s JOIN pgstac.items o "
        "ON o.id = s.id AND o.collection = s.collection WHERE o IS DISTINCT FROM s "
        "ORDER BY o.collection, o.id FOR UPDATE OF o) "
        "DELETE FROM pgstac.items i USING locked l WHERE i.collection = l.collection AND i.id = l.id")
    conn.execute("INSERT INTO pgstac.items SELECT * FROM _items_in ON CONFLICT DO NOTHING")
    # A re-published patch keeps the labels users gave it (its new content has none).
    refresh_annotation_labels(conn, "SELECT collection, id FROM _items_in")
    return len(rows)


def refresh_annotation_labels(conn: psycopg.Connection, keys_sql: str, params: Sequence[Any] = ()) -> None:
    """Write the annotation labels (:data:`catalog.items.ANNOTATIONS`) into those items of ``keys_sql`` that
    have annotations.

    Args:
        conn: Connection (the caller's transaction).
        keys_sql: A query of ``(collection, id)`` rows.
        params: Its parameters.
    """
    conn.execute(
        f"WITH keys AS ({keys_sql}), labels AS ("
        "SELECT a.collection, a.item_id, array_agg(DISTINCT x ORDER BY x) AS names FROM eofusion.annotations a "
        "JOIN keys k ON k.collection = a.collection AND k.id = a.item_id "
        "JOIN eofusion.labels l ON l.id = a.label_id LEFT JOIN eofusion.labels p ON p.id = l.parent_id "
        "CROSS JOIN LATERAL unnest(ARRAY[l.path, COALESCE(p.path, l.path)]) x GROUP BY 1, 2) "
        "UPDATE pgstac.items i SET content = jsonb_set(i.content, %s, to_jsonb(labels.names)) FROM labels "
        "WHERE i.collection = labels.collection AND i.id = labels.item_id",
        (*params, ["properties", ANNOTATIONS]))


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def collection_exists(conn: psycopg.Connection, collection_id: str) -> bool:
    """Whether pgstac has that collection."""
    return conn.execute("SELECT 1 FROM pgstac.collections WHERE id = %s", (collection_id,)).fetchone() is not None


def item_exists(conn: psycopg.Connection, collection_id: str, item_id: str) -> bool:
    """Whether pgstac has that item."""
    return conn.execute("SELECT 1 FROM pgstac.items WHERE collection = %s AND id = %s",
                        (collection_id, item_id)).fetchone() is not None


def quicklooks(conn: psycopg.Connection, collection_id: str, item_ids: Sequence[str]) -> dict[str, str]:
    """The stored ``thumbnail`` href (:func:`catalog.hrefs.quicklook`) of each item that has one."""
    rows = conn.execute("SELECT id, content->'assets'->'thumbnail'->>'href' FROM pgstac.items "
                        "WHERE collection = %s AND id = ANY(%s)", (collection_id, list(item_ids))).fetchall()
    return {r[0]: r[1] for r in rows if r[1] is not None}
