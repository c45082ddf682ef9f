"""CQL2 text in ``POST /stac/search`` bodies, as in GET: converted to CQL2 JSON when the body is validated.

The filter extension requires CQL2 JSON in POST bodies and lets servers take CQL2 text there too.
stac-fastapi takes only JSON, so clients that post the filter the user typed (rustac's ``search
--filter``) got a 400 for every filter. Here a string filter is parsed and validated by cql2 (the library
stac-fastapi-pgstac converts GET filters with) and the search continues as a CQL2 JSON search: pgstac
(which refuses ``filter-lang: cql2-text``), paging links and the similarity ranking see only JSON.

stac-fastapi builds the POST model from the extensions' fields and drops model validators, so the
conversion lives in field validators: ``filter`` is declared before ``filter-lang``, whose validator sees it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import cql2
from pydantic import AfterValidator, BaseModel, Field, ValidationInfo
from stac_fastapi.extensions import SearchFilterExtension
from stac_fastapi.pgstac.extensions.filter import FiltersClient


def text_to_json(text: str) -> dict[str, Any]:
    """The CQL2 JSON of a CQL2 text condition (a CQL2 JSON document given as a string parses too).

    Raises:
        ValueError: the text does not parse or is no condition (a bare property or value).
    """
    try:
        expr = cql2.Expr(text)
        expr.validate()
        value = expr.to_json()
    except Exception as err:  # cql2 raises its own error types and bare Exceptions
        raise ValueError(f"not a CQL2 text condition: {str(err).strip()}") from None
    if not isinstance(value, dict):
        raise ValueError(f"not a CQL2 text condition: {text!r}")
    return value


def _filter_as_json(value: dict[str, Any] | str | None) -> dict[str, Any] | None:
    return text_to_json(value) if isinstance(value, str) else value


def _lang_of_converted(value: str | None, info: ValidationInfo) -> str | None:
    # The filter is CQL2 JSON once validated, whichever form it came in.
    return "cql2-json" if value == "cql2-text" and info.data.get("filter_expr") is not None else value


class TextOrJsonFilterPostRequest(BaseModel):
    """The filter members of a search body: CQL2 JSON (an object) or CQL2 text (a string, filter-lang cql2-text)."""

    filter_expr: Annotated[dict[str, Any] | str | None, AfterValidator(_filter_as_json)] = Field(
        None, alias="filter",
        description="A CQL2 filter: a CQL2 JSON object, or CQL2 text as a string (filter-lang cql2-text)")
    filter_crs: str | None = Field(
        None, alias="filter-crs",
        description="The coordinate reference system (CRS) used by spatial literals in the 'filter' value. "
                    "Default is `http://www.opengis.net/def/crs/OGC/1.3/CRS84`")
    filter_lang: Annotated[Literal["cql2-json", "cql2-text"] | None, AfterValidator(_lang_of_converted)] = Field(
        "cql2-json", alias="filter-lang",
        description="The encoding of 'filter': cql2-json (default) or cql2-text (converted to cql2-json)")


def search_filter_extension() -> SearchFilterExtension:
    """stac-fastapi-pgstac's item search filter extension, whose POST body also takes CQL2 text.

    An instance of stac-fastapi's own class (its POST model set on the instance), not a subclass: stac-fastapi
    finds extensions by class name (the landing page's queryables link, the collections' links).
    """
    extension = SearchFilterExtension(client=FiltersClient())
    extension.POST = TextOrJsonFilterPostRequest
    return extension
