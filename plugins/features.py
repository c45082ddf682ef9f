"""OGC API Features over the project's PostGIS views, through pygeoapi's SQL provider on psycopg 3.

pygeoapi hands the provider the client's values nearly as they came (a ``datetime`` string, a
CQL2 tree naming any attribute, bbox numbers that may be ``nan``): this provider checks each
against the layer's columns and types first, so a bad value is a 400 that names it, never a
database error answered 500.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pygeoapi.provider.base import ProviderInvalidQueryError, ProviderItemNotFoundError
from pygeoapi.provider.sql import GenericSQLProvider, PostgreSQLProvider
from sqlalchemy import and_
from sqlalchemy.exc import DataError, DBAPIError

# Errors a query built from checked client values can still meet, all about those values: a
# data exception (SQLSTATE class 22, or psycopg refusing a value such as text with NUL: a number
# out of range, text that is not a timestamp...), and a comparison of a column with a literal of
# another type (operator does not exist, datatype mismatch, indeterminate type). Anything else is
# a server fault and stays a 500.
_CLIENT_SQLSTATES = frozenset({"42883", "42804", "42P18"})


def _is_client_error(err: DBAPIError) -> bool:
    state = str(getattr(err.orig, "sqlstate", "") or "")
    return isinstance(err, DataError) or state.startswith("22") or state in _CLIENT_SQLSTATES


def _first_line(err: DBAPIError) -> str:
    return str(err.orig).strip().splitlines()[0] if str(err.orig).strip() else type(err.orig).__name__


def parse_instant(text: str, *, end: bool = False) -> datetime:
    """An RFC 3339 date-time or full date as an aware datetime (naive means UTC).

    Args:
        text: ``2013-09-12T10:00:00Z``, ``2013-09-12T10:00:00+02:00`` or ``2013-09-12``.
        end: For a full date, the end of that day (exclusive bound) instead of its start.

    Raises:
        ProviderInvalidQueryError: ``text`` is neither (names the value).
    """
    value = text.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            if not end:
                return start
            return start + timedelta(days=1) if day < date.max else datetime.max.replace(tzinfo=UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError as err:
        raise ProviderInvalidQueryError(
            user_msg=f"datetime: {text!r} is not an RFC 3339 date-time or date") from err
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def parse_interval(text: str) -> tuple[datetime | None, datetime | None, bool]:
    """The ``datetime`` parameter as (start, end, end_is_exclusive); None is an open end.

    An instant is the interval it covers: a date-time matches itself, a date its whole day.

    Raises:
        ProviderInvalidQueryError: more than one ``/``, a bound that is not a date, or start after end.
    """
    parts = text.split("/")
    if len(parts) > 2:
        raise ProviderInvalidQueryError(user_msg=f"datetime: {text!r} is neither an instant nor an interval")
    if len(parts) == 1:
        if parts[0].strip() in ("", ".."):
            raise ProviderInvalidQueryError(user_msg=f"datetime: {text!r} is not an instant")
        start = parse_instant(parts[0])
        is_day = len(parts[0].strip()) == 10
        return start, parse_instant(parts[0], end=True) if is_day else start, is_day
    lo, hi = (p.strip() for p in parts)
    low = None if lo in ("", "..") else parse_instant(lo)
    high = None if hi in ("", "..") else parse_instant(hi, end=True)
    if low is not None and high is not None and low > high:
        raise ProviderInvalidQueryError(user_msg=f"datetime: the interval {text!r} ends before it starts")
    return low, high, len(hi) == 10


def _parts(node: Any) -> Iterator[Any]:
    """Every node and value of a pygeofilter tree, ``node`` included."""
    from pygeofilter import ast

    yield node
    subs = node.get_sub_nodes() if isinstance(node, ast.Node) else node if isinstance(node, list | tuple) else []
    for sub in subs:
        yield from _parts(sub)


def _geometry_problem(value: Any) -> str | None:
    """Why a geometry literal of a filter cannot be sent to PostGIS, or None."""
    from shapely.geometry import shape

    try:
        geometry = shape(value.geometry)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
        return str(err) or type(err).__name__
    if geometry.is_empty or not all(math.isfinite(c) for c in geometry.bounds):
        return "empty, or with a coordinate that is not a finite number"
    return None


class PgFeatureProvider(PostgreSQLProvider):
    """pygeoapi's PostgreSQL provider, driven by psycopg 3, that answers bad values with 400."""

    def __init__(self, provider_def: dict[str, Any]) -> None:
        GenericSQLProvider.__init__(
            self, provider_def, "postgresql+psycopg", {"client_encoding": "utf8", "application_name": "eofusion-ogc"}
        )

    @property
    def _columns(self) -> frozenset[str]:
        return frozenset(self.table_model.__table__.columns.keys())

    def query(self, **kwargs: Any) -> dict[str, Any]:
        """pygeoapi's query; a database error caused by a client's value becomes a 400 naming it."""
        try:
            result: dict[str, Any] = super().query(**kwargs)
        except DBAPIError as err:
            if _is_client_error(err):
                raise ProviderInvalidQueryError(user_msg=f"invalid query: {_first_line(err)}") from err
            raise
        return result

    def get(self, identifier: Any, crs_transform_spec: Any = None, **kwargs: Any) -> dict[str, Any]:
        """One feature; an identifier the id column cannot hold is simply not found."""
        try:
            feature: dict[str, Any] = super().get(identifier, crs_transform_spec, **kwargs)
        except DBAPIError as err:
            if _is_client_error(err):
                raise ProviderItemNotFoundError(user_msg=f"no feature {identifier!r}") from err
            raise
        return feature

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
            except (ValueError, TypeError, OverflowError) as err:
                raise ProviderInvalidQueryError(user_msg=f"{name}: {raw!r} is not a valid value") from err
            except NotImplementedError:
                value = raw
            clauses.append(column == value)
        return and_(*clauses)

    def _get_cql_filters(self, filterq: Any) -> Any:
        from pygeofilter import ast, values

        if filterq is not None and not isinstance(filterq, ast.Node | bool):
            # A CQL2 JSON body such as `0` or `"text"` parses to a bare value, not a condition.
            raise ProviderInvalidQueryError(user_msg=f"filter: {filterq!r} is not a CQL2 condition")
        if filterq:
            # pygeofilter leaves a name it does not know as a bare SQL identifier or literal: an
            # unknown property would silently match nothing (or fail in the database).
            parts = list(_parts(filterq))
            unknown = sorted({p.name for p in parts if isinstance(p, ast.Attribute)} - self._columns)
            if unknown:
                raise ProviderInvalidQueryError(user_msg=f"filter: unknown propert(y/ies) {', '.join(unknown)}")
            # PostGIS answers a malformed geometry (a polygon of one point) with an internal error.
            for part in parts:
                problem = _geometry_problem(part) if isinstance(part, values.Geometry) else None
                if problem:
                    raise ProviderInvalidQueryError(user_msg=f"filter: invalid geometry ({problem})")
        try:
            return super()._get_cql_filters(filterq)
        except ProviderInvalidQueryError:
            raise
        except (KeyError, ValueError, TypeError, NotImplementedError, AttributeError) as err:
            raise ProviderInvalidQueryError(user_msg=f"filter: cannot evaluate ({type(err).__name__}: {err})") from err

    def _get_bbox_filter(self, bbox: list[float]) -> Any:
        if not bbox:
            return True
        if not all(math.isfinite(float(v)) for v in bbox):
            raise ProviderInvalidQueryError(user_msg=f"bbox: every value must be a finite number, got {bbox}")
        # A 3-D box (minx, miny, minz, maxx, maxy, maxz) filters on its 2-D footprint.
        flat = [bbox[0], bbox[1], bbox[3], bbox[4]] if len(bbox) == 6 else list(bbox)
        return super()._get_bbox_filter(flat)

    def _get_datetime_filter(self, datetime_: str | None) -> Any:
        # pygeoapi passes the parameter as text, and without a configured temporal extent it is
        # not checked: compare typed bounds instead of strings.
        if datetime_ is None or datetime_.strip() in ("../..", "/", ""):
            return True
        if self.time_field is None:
            raise ProviderInvalidQueryError(user_msg="datetime: this collection has no time")
        column = getattr(self.table_model, self.time_field)
        start, end, exclusive = parse_interval(datetime_)
        clauses = []
        if start is not None:
            clauses.append(column >= start)
        if end is not None:
            clauses.append(column < end if exclusive else column <= end)
        return and_(*clauses) if clauses else True
