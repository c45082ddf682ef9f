"""Processes over the label catalogue: list it, and add user-defined labels."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from catalog import labels
from eofusion.errors import InvalidInput
from plugins.base import Cost, EOFusionProcessor, Ident, ProcessInputs, Weight

_LABEL_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"}, "level": {"type": "integer"}, "name": {"type": "string"},
        "path": {"type": "string"}, "parent": {"type": ["string", "null"]},
        "description": {"type": "string"}, "corine_codes": {"type": "array", "items": {"type": "string"}},
        "color": {"type": ["string", "null"]}, "user_defined": {"type": "boolean"},
    },
}

LIST_METADATA: dict[str, Any] = {
    "version": "0.1.0",
    "id": "list-labels",
    "title": {"en": "List the label catalogue"},
    "description": {"en": "The two-level label catalogue (level 1: CANDELA classes; level 2: CORINE names and "
                          "user-defined labels), optionally filtered by level or level-1 parent."},
    "jobControlOptions": ["sync-execute", "async-execute"],
    "keywords": ["labels", "catalogue", "CORINE"],
    "links": [],
    "outputs": {"labels": {"title": "Labels", "schema": {"type": "array", "items": _LABEL_SCHEMA},
                           "contentMediaType": "application/json"}},
    "example": {"inputs": {"level": 1}},
}

CREATE_METADATA: dict[str, Any] = {
    "version": "0.1.0",
    "id": "create-label",
    "title": {"en": "Add a user-defined label"},
    "description": {"en": "Adds a level-2 label under a level-1 class of the catalogue. Needs an API key."},
    "jobControlOptions": ["sync-execute", "async-execute"],
    "keywords": ["labels"],
    "links": [],
    "outputs": {"label": {"title": "The new label", "schema": _LABEL_SCHEMA,
                          "contentMediaType": "application/json"}},
    "example": {"inputs": {"parent": "Water Bodies", "name": "Flooded fields"}},
}


class ListLabelsInputs(ProcessInputs):
    """Inputs of ``list-labels``."""

    level: Annotated[Literal[1, 2] | None, Field(title="Level", description="1 or 2; all levels when absent.")] = None
    parent: Annotated[Ident | None, Field(title="Level-1 class",
                                          description="Only the labels under this class.")] = None


class CreateLabelInputs(ProcessInputs):
    """Inputs of ``create-label``."""

    parent: Annotated[Ident, Field(title="Level-1 class")]
    name: Annotated[str, StringConstraints(max_length=80), Field(title="Name")]
    description: Annotated[str | None, StringConstraints(max_length=2000), Field(title="Description")] = None


class ListLabelsProcessor(EOFusionProcessor[ListLabelsInputs]):
    """List the label catalogue."""

    inputs_model = ListLabelsInputs
    read_only = True
    cost = Cost(Weight.LIGHT, "reads the label table (tens of rows)")

    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, LIST_METADATA)

    def run(self, inputs: ListLabelsInputs) -> tuple[str, Any]:
        """Return the labels as JSON."""
        with self.connect() as conn:
            if inputs.parent is not None and labels.get_label(conn, inputs.parent) is None:
                raise InvalidInput(f"unknown level-1 class {inputs.parent!r}")
            found = labels.list_labels(conn, level=inputs.level, parent=inputs.parent)
        return "application/json", {"id": "labels", "labels": [lab.to_dict() for lab in found]}


class CreateLabelProcessor(EOFusionProcessor[CreateLabelInputs]):
    """Add a user-defined level-2 label."""

    inputs_model = CreateLabelInputs
    read_only = False  # it adds a row to the catalogue
    cost = Cost(Weight.LIGHT, "one insert")

    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, CREATE_METADATA)

    def run(self, inputs: CreateLabelInputs) -> tuple[str, Any]:
        """Create the label and return it."""
        with self.connect() as conn:
            try:
                label = labels.create_label(conn, inputs.parent, inputs.name, inputs.description or "")
            except labels.LabelError as err:
                raise InvalidInput(str(err)) from err
            conn.commit()
        return "application/json", {"id": "label", "label": label.to_dict()}
