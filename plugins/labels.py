"""Processes over the label catalogue: list it, and add user-defined labels."""

from __future__ import annotations

from typing import Any

from catalog import labels
from plugins.base import EOFusionProcessor, InputError, require, writes_data

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
    "inputs": {
        "level": {"title": "Level", "description": "1 or 2; all levels when absent.",
                  "schema": {"type": "integer", "enum": [1, 2]}, "minOccurs": 0, "maxOccurs": 1},
        "parent": {"title": "Level-1 class", "description": "Only the labels under this class.",
                   "schema": {"type": "string"}, "minOccurs": 0, "maxOccurs": 1},
    },
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
    "inputs": {
        "parent": {"title": "Level-1 class", "schema": {"type": "string"}, "minOccurs": 1, "maxOccurs": 1},
        "name": {"title": "Name", "schema": {"type": "string", "maxLength": 80}, "minOccurs": 1, "maxOccurs": 1},
        "description": {"title": "Description", "schema": {"type": "string"}, "minOccurs": 0, "maxOccurs": 1},
    },
    "outputs": {"label": {"title": "The new label", "schema": _LABEL_SCHEMA,
                          "contentMediaType": "application/json"}},
    "example": {"inputs": {"parent": "Water Bodies", "name": "Flooded fields"}},
}


class ListLabelsProcessor(EOFusionProcessor):
    """List the label catalogue."""

    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, LIST_METADATA)

    def execute(self, data: dict[str, Any], outputs: Any = None) -> tuple[str, Any]:
        """Return the labels as JSON."""
        level = data.get("level")
        if level is not None and level not in (1, 2):
            raise InputError(f"level must be 1 or 2, got {level!r}")
        parent = data.get("parent")
        with self.connect() as conn:
            if parent is not None and labels.get_label(conn, str(parent)) is None:
                raise InputError(f"unknown level-1 class {parent!r}")
            found = labels.list_labels(conn, level=level, parent=parent)
        return "application/json", {"id": "labels", "labels": [lab.to_dict() for lab in found]}


@writes_data("create-label")
class CreateLabelProcessor(EOFusionProcessor):
    """Add a user-defined level-2 label."""

    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, CREATE_METADATA)

    def execute(self, data: dict[str, Any], outputs: Any = None) -> tuple[str, Any]:
        """Create the label and return it."""
        parent = require(data, "parent", str)
        name = require(data, "name", str)
        description = data.get("description") or ""
        with self.connect() as conn:
            try:
                label = labels.create_label(conn, parent, name, str(description))
            except labels.LabelError as err:
                raise InputError(str(err)) from err
            conn.commit()
        return "application/json", {"id": "label", "label": label.to_dict()}
