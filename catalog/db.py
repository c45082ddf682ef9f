"""Where the database is: an existing server named by ``EOFUSION_DATABASE_URL`` or the embedded cluster."""

from __future__ import annotations

from urllib.parse import urlsplit

import psycopg
from pgvector.psycopg import register_vector

from catalog.cluster import EmbeddedCluster
from eofusion.config import Settings


def embedded_cluster(settings: Settings) -> EmbeddedCluster:
    """The embedded cluster of these settings (whether or not it is in use)."""
    return EmbeddedCluster(settings.data_dir / "db")


def database_url(settings: Settings, start: bool = True) -> str:
    """Return a libpq URL for the configured database.

    Args:
        settings: The installation's settings.
        start: With the embedded default, start the cluster if it is not running.

    Returns:
        A ``postgresql://`` URL.
    """
    if settings.database_url:
        return settings.database_url
    cluster = embedded_cluster(settings)
    info = cluster.start() if start else cluster.info()
    return info.url


def connect(url: str, autocommit: bool = False) -> psycopg.Connection:
    """Open a connection with the project's search path (pgstac functions are schema-qualified)."""
    return psycopg.connect(url, autocommit=autocommit, options="-c search_path=eofusion,pgstac,public")


def url_parts(url: str) -> dict[str, str]:
    """Split a URL into the pieces pgstac's settings and SQLAlchemy want."""
    u = urlsplit(url)
    return {
        "user": u.username or "",
        "password": u.password or "",
        "host": u.hostname or "127.0.0.1",
        "port": str(u.port or 5432),
        "dbname": (u.path or "/").lstrip("/") or "postgres",
    }


def use_vectors(conn: psycopg.Connection) -> None:
    """Let ``conn`` send and read pgvector values; registers the types once per connection.

    ``pgvector.psycopg.register_vector`` looks the types up in the database on every call: a round trip
    a pooled connection would pay again on every search.
    """
    if conn.adapters.types.get("vector") is None:
        register_vector(conn)
