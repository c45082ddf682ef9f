"""Bulk writes into pgstac, inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


def upsert_collection(conn: psycopg.Connection, collection: dict[str, Any]) -> None:
    """Create or replace a collection."""
    conn.execute("SELECT pgstac.upsert_collection(%s)", (Jsonb(collection),))


def upsert_items(conn: psycopg.Connection, items: Sequence[dict[str, Any]], chunk: int = 5000) -> int:
    """Create or replace items in one or a few statements (not one call per item)."""
    for i in range(0, len(items), chunk):
        conn.execute("SELECT pgstac.upsert_items(%s)", (Jsonb(list(items[i:i + chunk])),))
    return len(items)


def collection_exists(conn: psycopg.Connection, collection_id: str) -> bool:
    """Whether pgstac has that collection."""
    return conn.execute("SELECT 1 FROM pgstac.collections WHERE id = %s", (collection_id,)).fetchone() is not None
