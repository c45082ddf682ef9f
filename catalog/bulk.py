"""Bulk loading of descriptors: the HNSW indexes are built once after the rows, not grown row by row.

Inserting into a table with HNSW indexes costs a graph search per row and index: 340,587 rows took
34 minutes that way. Building the same index over the loaded rows takes a few minutes at most, so a
large load drops the table's HNSW indexes, loads with COPY and recreates them from their own
definitions (read from ``pg_indexes``, so later migrations that change an index are followed).

Two ways to use it:

* :func:`bulk_load_descriptors` does it in the caller's transaction: the table is locked for the
  load (concurrent readers wait instead of running without an index) and a failure rolls back the
  rows and the index change together.
* :func:`deferred_vector_indexes` spans many transactions (an archive loaded batch by batch): the
  indexes are dropped at entry and always recreated at exit, also on error; meanwhile similarity
  searches fall back to exact scans (correct, slower).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import psycopg
from numpy.typing import NDArray
from psycopg import sql

from catalog.db import connect
from catalog.descriptors import copy_descriptors


@dataclass(frozen=True)
class BulkLoadConfig:
    """How a bulk load treats the vector indexes.

    Attributes:
        table: Schema-qualified table whose HNSW indexes are deferred.
        min_rows_to_defer: Loads of fewer rows go straight into the live indexes: rebuilding a
            graph over the whole table costs more than inserting a few thousand rows into it.
        min_fraction: ... and so do loads smaller than this fraction of the rows already in the
            table (the rebuild covers every row, not only the new ones).
        maintenance_work_mem: Memory for an index build; an HNSW graph that does not fit is built
            much more slowly (pgvector warns). 340k x 160-d needs a few hundred MB.
        parallel_workers: ``max_parallel_maintenance_workers`` during the build (pgvector builds
            HNSW in parallel; 1 helper + the leader uses both cores of a small machine).
    """

    table: str = "eofusion.descriptors"
    min_rows_to_defer: int = 20_000
    min_fraction: float = 0.25
    maintenance_work_mem: str = "1GB"
    parallel_workers: int = 1


@dataclass(frozen=True)
class IndexDef:
    """A vector index as PostgreSQL describes it."""

    schema: str
    name: str
    definition: str  # the CREATE INDEX statement from pg_indexes


@dataclass
class BulkLoadReport:
    """What a bulk load did and how long each part took."""

    rows: int = 0
    deferred: bool = False
    indexes: list[str] | None = None
    load_seconds: float = 0.0
    index_seconds: float = 0.0


def vector_indexes(conn: psycopg.Connection, table: str = "eofusion.descriptors") -> list[IndexDef]:
    """The HNSW and IVFFlat indexes of a table, with the statements that recreate them."""
    schema, _, name = table.rpartition(".")
    rows = conn.execute(
        "SELECT schemaname, indexname, indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s "
        "AND (indexdef ILIKE '%% USING hnsw %%' OR indexdef ILIKE '%% USING ivfflat %%') ORDER BY indexname",
        (schema or "public", name)).fetchall()
    return [IndexDef(r[0], r[1], r[2]) for r in rows]


def table_rows(conn: psycopg.Connection, table: str) -> int:
    """The planner's row estimate of a table (no scan; 0 for a table never analysed)."""
    row = conn.execute("SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = %s::regclass",
                       (table,)).fetchone()
    return int(row[0]) if row else 0


def drop_indexes(conn: psycopg.Connection, indexes: Sequence[IndexDef]) -> None:
    """Drop the given indexes (in the connection's transaction)."""
    for ix in indexes:
        conn.execute(sql.SQL("DROP INDEX IF EXISTS {}.{}").format(sql.Identifier(ix.schema), sql.Identifier(ix.name)))


def create_indexes(conn: psycopg.Connection, indexes: Sequence[IndexDef], config: BulkLoadConfig) -> float:
    """Recreate indexes from their definitions with build settings for this transaction; returns seconds."""
    t = time.perf_counter()
    conn.execute("SELECT set_config('maintenance_work_mem', %s, true), "
                 "set_config('max_parallel_maintenance_workers', %s, true)",
                 (config.maintenance_work_mem, str(config.parallel_workers)))
    for ix in indexes:
        # pg_indexes gives "CREATE [UNIQUE] INDEX name ON ...": make a rerun after a partial failure harmless.
        stmt = ix.definition.replace(" INDEX ", " INDEX IF NOT EXISTS ", 1)
        conn.execute(stmt.encode())
    return time.perf_counter() - t


def bulk_load_descriptors(conn: psycopg.Connection, collection: str, item_ids: Sequence[str],
                          vectors: Mapping[str, NDArray[np.floating]],
                          config: BulkLoadConfig | None = None) -> BulkLoadReport:
    """Upsert many items' descriptors in the caller's transaction, deferring the vector indexes.

    With at least ``config.min_rows_to_defer`` rows (and ``config.min_fraction`` of the rows already
    stored, by the planner's estimate) the table's HNSW indexes are dropped, the rows
    copied (binary COPY + one INSERT, :func:`catalog.descriptors.copy_descriptors`) and the indexes
    rebuilt, all before the caller commits; smaller loads insert into the live indexes.

    Args:
        conn: Open connection; the caller commits.
        collection: Collection id of the items.
        item_ids: One id per row of each array.
        vectors: Descriptor kind -> ``(n, dim)`` array.
        config: Index handling; defaults to :class:`BulkLoadConfig`.

    Returns:
        Row count, whether the indexes were deferred, and the load and index build times.
    """
    cfg = config or BulkLoadConfig()
    report = BulkLoadReport(rows=len(item_ids))
    indexes: list[IndexDef] = []
    if len(item_ids) >= cfg.min_rows_to_defer and len(item_ids) >= cfg.min_fraction * table_rows(conn, cfg.table):
        indexes = vector_indexes(conn, cfg.table)
        drop_indexes(conn, indexes)
        report.deferred, report.indexes = True, [ix.name for ix in indexes]
    t = time.perf_counter()
    copy_descriptors(conn, collection, item_ids, vectors)
    report.load_seconds = time.perf_counter() - t
    if indexes:
        report.index_seconds = create_indexes(conn, indexes, cfg)
    return report


@contextmanager
def deferred_vector_indexes(database_url: str, config: BulkLoadConfig | None = None) -> Iterator[list[IndexDef]]:
    """Drop a table's vector indexes for a load of many transactions; rebuild them at exit.

    Yields:
        The dropped indexes. They are recreated when the block ends, also when it raises.
    """
    cfg = config or BulkLoadConfig()
    with connect(database_url, autocommit=True) as conn:
        indexes = vector_indexes(conn, cfg.table)
        drop_indexes(conn, indexes)
    try:
        yield indexes
    finally:
        with connect(database_url) as conn:
            create_indexes(conn, indexes, cfg)
            conn.commit()
