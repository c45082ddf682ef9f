"""Apply a session's model to patches outside its pool: another collection, one scene, a bbox, a time window.

:func:`apply_model` is the one service function (the ``apply-model`` process and ``eofusion apply-model`` both
call it). The latest round's model scores each target patch with the same feature map and float32 arithmetic as
a round scores the session's own pool, so a patch scores the same wherever it is. Patches scoring above the
threshold become annotations of the given label, marked ``predicted``, with the score, the model (session and
round), the session and the time as provenance. A prediction never replaces an accepted annotation.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from catalog import sessions as store
from catalog.annotations import AnnotationError, NewAnnotation, add_annotations
from catalog.db import connect
from catalog.labels import get_label
from catalog.load import collection_exists
from catalog.predictions import Target, model_id, target_descriptors
from eofusion.active import score_pool
from eofusion.active.round import LinearModel, Model, RbfModel
from eofusion.errors import InvalidInput, NotFound
from plugins.base import Bound, Cost, EOFusionProcessor, Ident, ProcessInputs, Weight

#: Called with (percent, message) as the work advances.
Progress = Callable[[float, str], None]
#: Rows scored (and annotations written) per step: bounds memory and paces the progress reports.
_CHUNK = 8192


@dataclass(frozen=True)
class ApplyRequest:
    """What to score with which session's model, and what to write.

    Attributes:
        session: The session whose latest round's model is applied (its descriptor kind is scored).
        collection: The patches' collection.
        label: Catalogue label path written on the patches predicted positive.
        scene: Only patches cut from this scene.
        bbox: Only patches intersecting it (WGS84 west, south, east, north).
        start: Only patches whose time range ends at or after it.
        end: Only patches whose time range starts at or before it.
        level: Grid level; ``None`` = the session's.
        min_score: Decision threshold (the SVM's is 0).
        user: Who asked (provenance).
    """

    session: uuid.UUID
    collection: str
    label: str
    scene: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    start: datetime | None = None
    end: datetime | None = None
    level: int | None = None
    min_score: float = 0.0
    user: str | None = None


@dataclass
class ApplyReport:
    """What :func:`apply_model` did."""

    session: str
    round: int
    model: str
    collection: str
    descriptor: str
    label: str
    scored: int = 0
    predicted_positive: int = 0
    written: int = 0
    kept_accepted: int = 0  # positives that already had the label accepted: left as they were
    items: list[dict[str, Any]] = field(default_factory=list)  # the best-scoring positives (at most 1000)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return dict(self.__dict__)


def _mapped_dim(model: Model) -> int:
    if isinstance(model, LinearModel):
        return int(model.weights.shape[0])
    if isinstance(model, RbfModel):
        return int(model.support_vectors.shape[1])
    return int(model.prototypes.shape[1])


def score_target(model: Model, matrix: NDArray[np.float32], progress: Progress | None = None) -> NDArray[np.float32]:
    """Scores of every row, chunk by chunk (the model's own feature map applied to each chunk).

    Raises:
        InvalidInput: descriptors of another dimension than the model was trained on.
    """
    expected = _mapped_dim(model)
    if model.feature_map.output_dim(matrix.shape[1]) != expected:
        raise InvalidInput(f"the target's descriptors have {matrix.shape[1]} dimensions; the session's model was "
                           "trained on descriptors of another dimension (another descriptor version)")
    out = np.empty(matrix.shape[0], dtype=np.float32)
    for start in range(0, matrix.shape[0], _CHUNK):
        out[start:start + _CHUNK] = score_pool(model, matrix[start:start + _CHUNK])
        if progress is not None:
            progress(10 + 50 * min(1.0, (start + _CHUNK) / matrix.shape[0]), "scoring patches")
    return out


def apply_model(database_url: str, request: ApplyRequest, progress: Progress | None = None) -> ApplyReport:
    """Score the target's patches with the session's latest model and write the positives as predicted annotations.

    Raises:
        NotFound: an unknown session or collection.
        InvalidInput: a session without a model, an unknown label, no patch matching the target, descriptors of
            another dimension.
    """
    with connect(database_url) as conn:
        try:
            session = store.get_session(conn, request.session)
        except store.SessionError as err:
            raise NotFound(str(err)) from err
        round_no, model = store.latest_model(conn, session)
        if model is None:
            raise InvalidInput(f"session {session.id} has no model yet: run active-learning-round first")
        label = get_label(conn, request.label)
        if label is None:
            raise InvalidInput(f"label {request.label!r} is not in the catalogue (add it with create-label first)")
        if not collection_exists(conn, request.collection):
            raise NotFound(f"unknown collection {request.collection!r}")
        if request.bbox is not None:
            w, s, e, n = request.bbox
            if not (-90 <= s <= n <= 90 and -180 <= w <= e <= 180):
                raise InvalidInput("bbox must be west, south, east, north in degrees, south <= north, west <= east")
        if request.start and request.end and request.start > request.end:
            raise InvalidInput("start is after end")
        target = Target(request.collection, session.descriptor,
                        request.level if request.level is not None else session.level, request.scene,
                        request.bbox, request.start, request.end)
        if progress is not None:
            progress(5, "reading descriptors")
        ids, matrix = target_descriptors(conn, target)
        if not ids:
            raise InvalidInput(f"no patch of collection {target.collection!r} with a {target.descriptor!r} "
                               "descriptor matches the target (scene, bbox, time, level)")
        scores = score_target(model, matrix, progress)
        name = model_id(session.id, round_no)
        report = ApplyReport(str(session.id), round_no, name, target.collection, target.descriptor, label.path,
                             scored=len(ids))
        positive = np.flatnonzero(scores > request.min_score)
        report.predicted_positive = int(positive.size)
        order = positive[np.argsort(-scores[positive], kind="stable")]
        for start in range(0, order.size, _CHUNK):
            chunk = order[start:start + _CHUNK].tolist()
            try:
                report.written += add_annotations(conn, [
                    NewAnnotation(target.collection, ids[i], label.path, request.user, session.id, round_no,
                                  float(scores[i]), kind="predicted", model=name) for i in chunk])
            except AnnotationError as err:  # an item deleted meanwhile
                raise InvalidInput(str(err)) from err
            if progress is not None:
                progress(60 + 40 * min(1.0, (start + _CHUNK) / order.size), "writing predicted annotations")
        conn.commit()
    report.kept_accepted = report.predicted_positive - report.written
    report.items = [{"collection": target.collection, "item": ids[i], "score": float(scores[i])}
                    for i in order[:1000].tolist()]
    return report


# -- the process --------------------------------------------------------------------------------------------------

APPLY_METADATA: dict[str, Any] = {
    "version": "0.1.0", "id": "apply-model",
    "title": {"en": "Apply a session's model to new patches"},
    "description": {"en": "Scores the patches of a collection (optionally one scene, a bbox, a time window) with the "
                          "latest model of an active-learning session (same descriptor kind) and writes those "
                          "scoring above the threshold as annotations of a label, marked predicted, with score, "
                          "model, session and time as provenance. A prediction never replaces an accepted "
                          "annotation. Asynchronous runs report progress. Needs an API key."},
    "jobControlOptions": ["async-execute", "sync-execute"], "keywords": ["active learning", "classification"],
    "links": [],
    "outputs": {"report": {"title": "What was scored and written", "schema": {"type": "object"},
                           "contentMediaType": "application/json"}},
    "example": {"inputs": {"session": "00000000-0000-0000-0000-000000000000", "collection": "eurosat",
                           "label": "Water Bodies"}},
}


class ApplyInputs(ProcessInputs):
    """Inputs of ``apply-model``."""

    session: Annotated[uuid.UUID, Field(title="Session whose latest model is applied")]
    collection: Annotated[Ident, Field(title="Collection of the patches to score")]
    label: Annotated[Ident, Field(title="Catalogue label path of the predicted positives")]
    scene: Annotated[Ident | None, Field(title="Only patches of this scene")] = None
    bbox: Annotated[list[Annotated[float, Field(ge=-180, le=180)]] | None, Field(
        title="Only patches intersecting this WGS84 bbox (west, south, east, north)", min_length=4,
        max_length=4)] = None
    start: Annotated[datetime | None, Field(title="Only patches whose time range ends at or after it")] = None
    end: Annotated[datetime | None, Field(title="Only patches whose time range starts at or before it")] = None
    level: Annotated[int | None, Field(title="Grid level (default: the session's)", ge=1, le=1_000_000)] = None
    min_score: Annotated[float, Field(title="Decision threshold", ge=-1e6, le=1e6)] = 0.0
    user: Annotated[Ident | None, Field(title="User"), Bound("text_chars", cap=256)] = None


class ApplyModelProcessor(EOFusionProcessor[ApplyInputs]):
    """The ``apply-model`` process: its declaration and a call of :func:`apply_model`."""

    inputs_model = ApplyInputs
    read_only = False  # it writes predicted annotations
    cost = Cost(Weight.HEAVY, "one scoring pass over the target's descriptors and a bulk write of annotations")

    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, APPLY_METADATA)

    def run(self, inputs: ApplyInputs) -> tuple[str, Any]:
        """Apply the session's model to the target."""
        bbox = (inputs.bbox[0], inputs.bbox[1], inputs.bbox[2], inputs.bbox[3]) if inputs.bbox else None
        report = apply_model(self.database_url, ApplyRequest(
            inputs.session, inputs.collection, inputs.label, inputs.scene, bbox, inputs.start, inputs.end,
            inputs.level, inputs.min_score, inputs.user), self.progress)
        return "application/json", report.as_dict()
