"""REST access to the label catalogue: ``GET /labels`` and ``POST /labels`` (API key)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from catalog import labels
from catalog.db import connect
from eofusion.errors import Conflict, InvalidInput, NotFound


class NewLabel(BaseModel):
    """A user-defined label under a level-1 class."""

    parent: str = Field(description="Level-1 class, e.g. 'Water Bodies'")
    name: str = Field(min_length=1, max_length=80, description="Name of the new level-2 label")
    description: str = Field(default="", max_length=2000)


def labels_router(database_url: str) -> APIRouter:
    """Routes over the label catalogue of the database at ``database_url``."""
    router = APIRouter(prefix="/labels", tags=["Labels"])

    def _list(level: int | None, parent: str | None) -> list[dict[str, Any]]:
        with connect(database_url) as conn:
            if parent is not None and labels.get_label(conn, parent) is None:
                raise NotFound(f"unknown level-1 class {parent!r}")
            return [lab.to_dict() for lab in labels.list_labels(conn, level=level, parent=parent)]

    def _create(body: NewLabel) -> dict[str, Any]:
        with connect(database_url) as conn:
            try:
                label = labels.create_label(conn, body.parent, body.name, body.description)
            except labels.LabelError as err:
                # The catalogue's one error type: a duplicate is a conflict, the rest bad input.
                raise (Conflict if "exists" in str(err) else InvalidInput)(str(err)) from err
            conn.commit()
            return label.to_dict()

    @router.get("", summary="The label catalogue")
    async def list_labels(
        level: Annotated[int | None, Query(ge=1, le=2)] = None,
        parent: Annotated[str | None, Query(description="Level-1 class")] = None,
    ) -> dict[str, Any]:
        return {"labels": await run_in_threadpool(_list, level, parent)}

    @router.post("", status_code=201, summary="Add a user-defined label (needs an API key)")
    async def create_label(body: NewLabel) -> dict[str, Any]:
        return await run_in_threadpool(_create, body)

    return router
