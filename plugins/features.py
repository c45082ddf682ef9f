"""OGC API Features over the project's PostGIS views, through pygeoapi's SQL provider on psycopg 3."""

from __future__ import annotations

from typing import Any

from pygeoapi.provider.sql import GenericSQLProvider, PostgreSQLProvider


class PgFeatureProvider(PostgreSQLProvider):
    """pygeoapi's PostgreSQL provider, driven by psycopg 3 instead of psycopg2."""

    def __init__(self, provider_def: dict[str, Any]) -> None:
        GenericSQLProvider.__init__(
            self, provider_def, "postgresql+psycopg", {"client_encoding": "utf8", "application_name": "eofusion-ogc"}
        )
