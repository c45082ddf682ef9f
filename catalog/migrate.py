"""Schema migrations: pgstac's, then the project's own numbered SQL files, then seed data.

Each project migration runs in its own transaction and is recorded in
``eofusion.schema_migrations``, so running ``eofusion db migrate`` twice changes nothing. A migration is a
``NNNN_name.sql`` file, or a ``NNNN_name.py`` module with ``apply(conn)`` for a step SQL cannot compute
(e.g. WKT2 from PROJ); both kinds run in name order.
An advisory lock keeps two processes from migrating at once. Every run also recreates the vector
indexes a killed bulk load left dropped (:func:`catalog.bulk.restore_deferred_indexes`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import psycopg

from catalog import labels as labels_mod
from catalog.bulk import restore_deferred_indexes
from catalog.db import connect

_LOCK_KEY = 0x0E0F0510  # any constant shared by all EOFusion processes


@dataclass
class MigrationReport:
    """What one run of :func:`migrate` did."""

    pgstac_version: str = ""
    applied: list[str] = field(default_factory=list)
    labels_added: int = 0
    indexes_restored: list[str] = field(default_factory=list)


#: One migration step: SQL text, or a function of an open connection (inside the step's transaction).
Step = str | Callable[[psycopg.Connection[Any]], None]


def _python_step(name: str, source: str) -> Callable[[psycopg.Connection[Any]], None]:
    spec = importlib.util.spec_from_loader(f"catalog.migrations.m{name.split('.')[0]}", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    exec(compile(source, f"catalog/migrations/{name}", "exec"), module.__dict__)  # trusted file of the package
    step: Callable[[psycopg.Connection[Any]], None] = module.apply
    return step


def project_migrations() -> list[tuple[str, Step]]:
    """The project's migrations as (name, SQL text or Python step), in order."""
    folder = resources.files("catalog") / "migrations"
    files = sorted((p for p in folder.iterdir() if p.name.endswith((".sql", ".py"))), key=lambda p: p.name)
    return [(p.name, p.read_text() if p.name.endswith(".sql") else _python_step(p.name, p.read_text()))
            for p in files]


def _pgstac_migrate(url: str) -> str:
    from pypgstac.db import PgstacDB
    from pypgstac.migrate import Migrate

    with PgstacDB(dsn=url) as db:
        return str(Migrate(db).run_migration())


def migrate(url: str) -> MigrationReport:
    """Bring the database at ``url`` to the newest schema.

    Args:
        url: libpq URL of a database where the user may create extensions.

    Returns:
        What was applied.
    """
    report = MigrationReport()
    with connect(url, autocommit=True) as lock_conn:
        lock_conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            report.pgstac_version = _pgstac_migrate(url)
            with connect(url) as conn:
                conn.execute("CREATE SCHEMA IF NOT EXISTS eofusion")
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS eofusion.schema_migrations "
                    "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                conn.commit()
                done = {r[0] for r in conn.execute("SELECT name FROM eofusion.schema_migrations")}
                for name, step in project_migrations():
                    if name in done:
                        continue
                    with conn.transaction():
                        if callable(step):
                            step(conn)
                        else:
                            conn.execute(step)  # type: ignore[arg-type]  # trusted files of the package
                        conn.execute("INSERT INTO eofusion.schema_migrations (name) VALUES (%s)", (name,))
                    report.applied.append(name)
                report.labels_added = labels_mod.seed(conn)
                conn.commit()
                report.indexes_restored = restore_deferred_indexes(conn)
        finally:
            lock_conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return report


def schema_version(url: str) -> list[str]:
    """Names of the project migrations applied, oldest first ([] for a blank database)."""
    with connect(url) as conn:
        try:
            rows = conn.execute("SELECT name FROM eofusion.schema_migrations ORDER BY name").fetchall()
        except psycopg.errors.UndefinedTable:
            return []
    return [r[0] for r in rows]


def pending_migrations(url: str) -> list[str]:
    """Names of the project migrations not applied yet, oldest first (all of them for a blank database)."""
    applied = set(schema_version(url))
    return [name for name, _ in project_migrations() if name not in applied]
