"""OGC API Features over the project's PostGIS views, through pygeoapi's SQL provider on psycopg 3."""

from __future__ import annotations

from typing import Any

from pygeoapi.provider.base import ProviderInvalidQueryError
from pygeoapi.provider.sql import GenericSQLProvider, PostgreSQLProvider
from sqlalchemy import and_


class PgFeatureProvider(PostgreSQLProvider):
    """pygeoapi's PostgreSQL provider, driven by psycopg 3, with typed property filters."""

    def __init__(self, provider_def: dict[str, Any]) -> None:
        GenericSQLProvider.__init__(
            self, provider_def, "postgresql+psycopg", {"client_encoding": "utf8", "application_name": "eofusion-ogc"}
        )

    def _get_property_filters(self, properties: list[tuple[str, str]]) -> Any:
        # Query-string values arrive as text: convert them to the column's type first, so that
        # `grid_level=480` compares integers and `grid_level=abc` is a 400, not a database error.
        if not properties:
            return True
        clauses = []
        for name, raw in properties:
            column = getattr(self.table_model, name)
            try:
                value = column.type.python_type(raw)
            except (ValueError, TypeError) as err:
                raise ProviderInvalidQueryError(user_msg=f"{name}: {raw!r} is not a valid value") from err
            except NotImplementedError:
                value = raw
            clauses.append(column == value)
        return and_(*clauses)
