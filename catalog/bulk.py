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
  searches fall back to exact scans (correct, slower). The dropped definitions are recorded in
  ``eofusion.deferred_indexes`` in the transaction that drops them, and the loading session holds an
  advisory lock until it has rebuilt them: if the process is killed in between, the lock goes with
  its connection and the next load or ``eofusion db migrate`` (:func:`restore_deferred_indexes`)
  recreates the indexes.
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

#: Advisory lock class of a deferred load (the object id is the load's id in ``eofusion.deferred_indexes``).
_LOAD_LOCK_CLASS = 0x0E0F


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


def _recorded(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT to_regclass('eofusion.deferred_indexes') IS NOT NULL").fetchone()
    return bool(row and row[0])


def _claim_orphans(conn: psycopg.Connection) -> list[IndexDef]:
    """Take over the recorded indexes of loads whose session is gone (killed), in the caller's transaction.

    Their records are deleted: the caller recreates them before it commits (a rollback keeps the records).
    A load still running holds its advisory lock and is left alone.
    """
    if not _recorded(conn):  # a catalogue not migrated yet has nothing recorded
        return []
    # pg_try_advisory_xact_lock: the orphaned load's lock is held by this transaction until it commits, so two
    # processes restoring at once do not both build.
    rows = conn.execute(
        "DELETE FROM eofusion.deferred_indexes d WHERE d.load_id IN (SELECT l.load_id FROM "
        "(SELECT DISTINCT load_id FROM eofusion.deferred_indexes) l WHERE pg_try_advisory_xact_lock(%s, l.load_id)) "
        "RETURNING d.schema_name, d.index_name, d.definition", (_LOAD_LOCK_CLASS,)).fetchall()
    return sorted((IndexDef(r[0], r[1], r[2]) for r in rows), key=lambda ix: (ix.schema, ix.name))


def restore_deferred_indexes(conn: psycopg.Connection, config: BulkLoadConfig | None = None) -> list[str]:
    """Recreate the indexes that a killed deferred load dropped and never rebuilt; commits.

    Args:
        conn: Connection not in autocommit mode, outside a transaction of the caller's.
        config: Index build settings.

    Returns:
        Names of the indexes recreated.
    """
    orphans = _claim_orphans(conn)
    create_indexes(conn, orphans, config or BulkLoadConfig())
    conn.commit()
    return [ix.name for ix in orphans]


def _merge(first: Sequence[IndexDef], second: Sequence[IndexDef]) -> list[IndexDef]:
    seen = {(ix.schema, ix.name) for ix in first}
    return [*first, *(ix for ix in second if (ix.schema, ix.name) not in seen)]


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
    # Indexes a killed deferred load left dropped come back with this load (rebuilt after it, or now).
    orphans = _claim_orphans(conn)
    indexes: list[IndexDef] = []
    if len(item_ids) >= cfg.min_rows_to_defer and len(item_ids) >= cfg.min_fraction * table_rows(conn, cfg.table):
        indexes = vector_indexes(conn, cfg.table)
        drop_indexes(conn, indexes)
        indexes = _merge(indexes, orphans)
        report.deferred, report.indexes = True, [ix.name for ix in indexes]
    elif orphans:
        report.index_seconds = create_indexes(conn, orphans, cfg)
    t = time.perf_counter()
    copy_descriptors(conn, collection, item_ids, vectors)
    report.load_seconds = time.perf_counter() - t
    if indexes:
        report.index_seconds += create_indexes(conn, indexes, cfg)
    return report


@contextmanager
def deferred_vector_indexes(database_url: str, config: BulkLoadConfig | None = None) -> Iterator[list[IndexDef]]:
    """Drop a table's vector indexes for a load of many transactions; rebuild them at exit.

    The dropped ones are recorded (``eofusion.deferred_indexes``) under an advisory lock this load's
    session holds until they are rebuilt, so a kill in between loses nothing: the next load or
    :func:`restore_deferred_indexes` rebuilds them. Indexes an earlier, killed load left dropped are
    adopted by this load (rebuilt at its exit).

    Yields:
        The dropped indexes. They are recreated when the block ends, also when it raises.
    """
    cfg = config or BulkLoadConfig()
    with connect(database_url) as conn:
        recorded = _recorded(conn)
        load_id = 0
        if recorded:
            row = conn.execute("SELECT nextval('eofusion.index_loads')::int").fetchone()
            load_id = int(row[0]) if row else 0
            # Session level: held while the load runs, released with this process's connection if it is killed.
            conn.execute("SELECT pg_advisory_lock(%s, %s)", (_LOAD_LOCK_CLASS, load_id))
        existing = vector_indexes(conn, cfg.table)
        # A killed load's indexes are adopted by this one: rebuilt at its end, recorded under its lock meanwhile.
        indexes = _merge(existing, _claim_orphans(conn))
        if recorded:
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO eofusion.deferred_indexes (schema_name, index_name, definition, load_id) "
                                "VALUES (%s, %s, %s, %s) ON CONFLICT (schema_name, index_name) DO UPDATE SET "
                                "definition = EXCLUDED.definition, load_id = EXCLUDED.load_id, dropped_at = now()",
                                [(ix.schema, ix.name, ix.definition, load_id) for ix in indexes])
        drop_indexes(conn, existing)
        conn.commit()  # the drop and its record together
        try:
            yield indexes
        finally:
            conn.rollback()  # the connection may be in a failed state if the block broke it
            create_indexes(conn, indexes, cfg)
            if recorded:
                conn.execute("DELETE FROM eofusion.deferred_indexes WHERE load_id = %s", (load_id,))
            conn.commit()
            if recorded:
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", (_LOAD_LOCK_CLASS, load_id))
                conn.commit()
