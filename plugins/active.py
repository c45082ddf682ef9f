"""Active learning as OGC API Processes: rounds of relevance feedback and accepting the result.

Processes validate inputs, call :mod:`catalog.sessions` (storage) and :mod:`eofusion.active`
(the numpy round), and shape outputs. A pool's descriptor matrix, mapped for the kernel, is
cached per pool version in this process, so a round reads no descriptors from SQL once warm.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from catalog import sessions as store
from catalog.annotations import AnnotationError, NewAnnotation, add_annotations
from catalog.descriptors import richest_kind
from catalog.labels import get_label
from catalog.load import quicklooks
from eofusion.active import PreparedPool, RoundConfig, prepare_pool, restrict_fine_pool, run_round, score_pool
from eofusion.errors import InvalidInput, NotFound
from plugins.base import Bound, Cost, EOFusionProcessor, Ident, ProcessInputs, Weight, pooled_connection

_PATCH = {"type": "object", "properties": {"collection": {"type": "string"}, "item": {"type": "string"},
                                           "score": {"type": "number"}, "quicklook": {"type": "string"}}}


@dataclass
class Pool:
    """A pool ready for rounds: ids, kernel-mapped descriptors, parent cells."""

    ids: list[str]
    index: dict[str, int]
    prepared: PreparedPool
    parents: NDArray[np.str_]  # "" for cells of the coarsest level


class PoolCache:
    """A few prepared pools, keyed by (database, collection, descriptor, level, pool version)."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._pools: OrderedDict[tuple[Any, ...], Pool] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, conn: Any, url: str, pool: str, descriptor: str, level: int | None, config: RoundConfig,
            on_miss: Callable[[], Any] | None = None) -> Pool:
        """The prepared pool; read and mapped when its version is not cached (``on_miss`` is called first)."""
        key = (url, pool, descriptor, level, config.kernel, store.pool_version(conn, pool, descriptor))
        with self._lock:
            if key in self._pools:
                self._pools.move_to_end(key)
                return self._pools[key]
        if on_miss is not None:
            on_miss()
        ids, matrix, parents = store.pool_descriptors(conn, pool, descriptor, level)
        if not ids:
            where = f" at level {level}" if level else ""
            raise InvalidInput(f"pool {pool!r} has no {descriptor!r} descriptors{where}")
        entry = Pool(ids, {i: n for n, i in enumerate(ids)}, prepare_pool(matrix, config),
                     np.asarray([p or "" for p in parents], dtype=str))
        with self._lock:
            self._pools[key] = entry
            while len(self._pools) > self.size:
                self._pools.popitem(last=False)
        return entry


POOLS = PoolCache()

ROUND_METADATA: dict[str, Any] = {
    "version": "0.1.0", "id": "active-learning-round",
    "title": {"en": "Active-learning round"},
    "description": {"en": "Relevance feedback: record the user's positive/negative marks, train an SVM on the "
                          "session's patches, rank the whole pool and propose the most informative patches to mark "
                          "next (near the decision boundary, diverse). Starts a session when none is given; a "
                          "session with a parent session works on the finer patches inside the parent's accepted "
                          "cells (cascaded learning)."},
    "jobControlOptions": ["sync-execute", "async-execute"], "keywords": ["active learning", "SVM"], "links": [],
    "outputs": {"round": {"title": "Ranking and next queries", "schema": {"type": "object", "properties": {
        "session": {"type": "string"}, "round": {"type": "integer"}, "top": {"type": "array", "items": _PATCH},
        "queries": {"type": "array", "items": _PATCH}}}, "contentMediaType": "application/json"}},
    "example": {"inputs": {"pool": "eurosat", "descriptor": "s2",
                           "feedback": [{"item": "Forest_1031", "positive": True}]}},
}

ACCEPT_METADATA: dict[str, Any] = {
    "version": "0.1.0", "id": "accept-annotations",
    "title": {"en": "Accept a session's result as annotations"},
    "description": {"en": "Writes the patches the session's latest model predicts positive (and the user's positive "
                          "marks, never the negative ones) as semantic annotations with a catalogue label (level 1 "
                          "or 2, or user-defined), with provenance. Needs an API key."},
    "jobControlOptions": ["sync-execute", "async-execute"], "keywords": ["annotations"], "links": [],
    "outputs": {"annotations": {"title": "What was written", "schema": {"type": "object"},
                                "contentMediaType": "application/json"}},
    "example": {"inputs": {"session": "00000000-0000-0000-0000-000000000000", "label": "Forest"}},
}


Descriptor = Literal["fused", "s1", "s2"]


class Mark(ProcessInputs):
    """One relevance-feedback mark."""

    item: Annotated[Ident, Field(title="Patch item id")]
    positive: Annotated[bool, Field(title="Relevant (true) or not (false)")]


class RoundInputs(ProcessInputs):
    """Inputs of ``active-learning-round``."""

    session: Annotated[uuid.UUID | None, Field(title="Session id")] = None
    pool: Annotated[Ident | None, Field(title="Collection to search (new session)")] = None
    descriptor: Annotated[Descriptor | None, Field(title="Descriptor")] = None
    level: Annotated[int | None, Field(title="Grid level (patch size in px)", ge=1, le=1_000_000)] = None
    parent_session: Annotated[uuid.UUID | None, Field(
        title="Coarser session whose accepted cells restrict this one")] = None
    feedback: Annotated[list[Mark], Bound("marks_per_round"), Field(title="Marks")] = []
    user: Annotated[Ident | None, Field(title="User")] = None
    n_top: Annotated[int, Field(title="Ranked patches to return", ge=1), Bound("page_limit", cap=1000)] = 50
    n_queries: Annotated[int, Field(title="Patches to mark next", ge=1, le=100)] = 10


class AcceptInputs(ProcessInputs):
    """Inputs of ``accept-annotations``."""

    session: Annotated[uuid.UUID, Field(title="Session id")]
    label: Annotated[Ident, Field(title="Catalogue label path")]
    min_score: Annotated[float, Field(title="Decision threshold")] = 0.0
    user: Annotated[Ident | None, Field(title="User")] = None


def _session(conn: Any, session_id: uuid.UUID, lock: bool = False) -> store.Session:
    """A session by its (valid) id; an unknown one is a 404."""
    try:
        return store.get_session(conn, session_id, lock=lock)
    except store.SessionError as err:
        raise NotFound(str(err)) from err


def _accepted_cells(conn: Any, url: str, parent: store.Session, config: RoundConfig) -> set[str]:
    """Cells a coarse session accepted: its positive marks and what its last model predicts positive."""
    positives = {i for i, pos in parent.feedback.items() if pos}
    _, model = store.latest_model(conn, parent)
    if model is not None:
        pool = POOLS.get(conn, url, parent.pool, parent.descriptor, parent.level, config)
        scores = score_pool(model, pool.prepared)
        positives |= {pool.ids[i] for i in np.flatnonzero(scores > 0)}
    return positives - {i for i, pos in parent.feedback.items() if not pos}


class ActiveLearningRoundProcessor(EOFusionProcessor[RoundInputs]):
    """One relevance-feedback round."""

    inputs_model = RoundInputs
    read_only = False  # it stores the user's marks and the round's model
    cost = Cost(Weight.LIGHT, "one SVM fit on the marks and one scoring pass over a cached pool")

    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, ROUND_METADATA)

    def run(self, inputs: RoundInputs) -> tuple[str, Any]:
        """Record feedback, run the round, return ranking and queries."""
        config = RoundConfig(n_top=inputs.n_top, n_queries=inputs.n_queries)
        marks = [(m.item, m.positive) for m in inputs.feedback]
        user = inputs.user
        with pooled_connection(self.database_url) as conn:
            session = self._session(conn, inputs)
            try:
                if not marks and not any(session.feedback.values()):
                    raise InvalidInput("feedback is empty: mark at least one positive patch to start the session")
                round_no = session.rounds + 1
                store.add_feedback(conn, session, marks, round_no, user)
            except store.SessionError as err:
                raise InvalidInput(str(err)) from err
            # Progress is a job-table write: only worth it when the pool must be read (seconds), not
            # for a warm round of a few hundred milliseconds.
            pool = POOLS.get(conn, self.database_url, session.pool, session.descriptor, session.level, config,
                             on_miss=lambda: self.progress(30, "loading the pool"))
            allowed = np.arange(len(pool.ids))
            if session.parent_id is not None:
                accepted = _accepted_cells(conn, self.database_url, _session(conn, session.parent_id), config)
                allowed = restrict_fine_pool(np.asarray(sorted(accepted), dtype=str), pool.parents)
                if allowed.size == 0:
                    raise InvalidInput("the parent session accepted no cell: nothing to refine at this level")
            sub = pool.prepared if allowed.size == len(pool.ids) else PreparedPool(
                pool.prepared.features[allowed], pool.prepared.feature_map, pool.prepared.sq_norms[allowed])
            # The whole pool: reuse the cached id index (a 340k-entry dict per round costs ~0.1 s).
            local = pool.index if allowed.size == len(pool.ids) else {
                pool.ids[g]: n for n, g in enumerate(allowed.tolist())}
            outside = [i for i in session.feedback if i not in local]
            if outside:
                raise InvalidInput(f"marked items outside this session's pool: {', '.join(outside[:10])}")
            pos = [local[i] for i, p in session.feedback.items() if p]
            neg = [local[i] for i, p in session.feedback.items() if not p]
            result = run_round(sub, pos, neg, config)
            ids = [pool.ids[g] for g in allowed[np.concatenate([result.top_indices, result.query_indices])].tolist()]
            looks = quicklooks(conn, session.pool, ids)

            def patches(indices: NDArray[np.int64], scores: NDArray[np.float32]) -> list[dict[str, Any]]:
                return [{"collection": session.pool, "item": pool.ids[g], "score": float(s),
                         "quicklook": looks.get(pool.ids[g])}
                        for g, s in zip(allowed[indices].tolist(), scores.tolist(), strict=True)]

            metrics = {**result.metrics.__dict__, "total_seconds": result.metrics.total_seconds,
                       "positives": len(pos), "negatives": len(neg),
                       "pool_size": int(allowed.size), "predicted_positive": int((result.scores > 0).sum())}
            store.save_round(conn, session, round_no, result.model, metrics)
        return "application/json", {
            "session": str(session.id), "round": round_no, "pool": session.pool, "descriptor": session.descriptor,
            "level": session.level, "parent_session": str(session.parent_id) if session.parent_id else None,
            "top": patches(result.top_indices, result.top_scores),
            "queries": patches(result.query_indices, result.query_scores), "metrics": metrics}

    def _session(self, conn: Any, inputs: RoundInputs) -> store.Session:
        if inputs.session is not None:
            session = _session(conn, inputs.session, lock=True)  # rounds of a session in turn
            if inputs.pool and inputs.pool != session.pool:
                raise InvalidInput(f"session {session.id} works on pool {session.pool!r}, not {inputs.pool!r}")
            return session
        pool = inputs.pool
        if pool is None:
            raise InvalidInput("give a session, or a pool (collection) to start one")
        descriptor = inputs.descriptor or self._default_descriptor(conn, pool)
        if inputs.parent_session is not None:
            _session(conn, inputs.parent_session)  # an unknown parent is a 404
        try:
            return store.create_session(conn, pool, descriptor, inputs.level, inputs.parent_session, inputs.user)
        except store.SessionError as err:
            raise InvalidInput(str(err)) from err

    @staticmethod
    def _default_descriptor(conn: Any, pool: str) -> str:
        kind = richest_kind(conn, pool)
        if kind is not None:
            return kind
        raise InvalidInput(f"collection {pool!r} has no patch descriptors (unknown collection or nothing ingested)")


class AcceptAnnotationsProcessor(EOFusionProcessor[AcceptInputs]):
    """Write a session's result as semantic annotations."""

    inputs_model = AcceptInputs
    read_only = False  # it writes annotation rows and the session's state
    cost = Cost(Weight.LIGHT, "one scoring pass over a cached pool and one bulk insert")

    def __init__(self, processor_def: dict[str, Any]) -> None:
        super().__init__(processor_def, ACCEPT_METADATA)

    def run(self, inputs: AcceptInputs) -> tuple[str, Any]:
        """Annotate the predicted positives (and positive marks) with the label."""
        label_path, min_score = inputs.label, inputs.min_score
        with self.connect() as conn:
            session = _session(conn, inputs.session)
            label = get_label(conn, label_path)
            if label is None:
                raise InvalidInput(f"label {label_path!r} is not in the catalogue (add it with create-label first)")
            round_no, model = store.latest_model(conn, session)
            if model is None:
                raise InvalidInput(f"session {session.id} has no round yet: run active-learning-round first")
            pool = POOLS.get(conn, self.database_url, session.pool, session.descriptor, session.level, RoundConfig())
            scores = score_pool(model, pool.prepared)
            chosen = {pool.ids[i]: float(scores[i]) for i in np.flatnonzero(scores > min_score)}
            for item, pos in session.feedback.items():
                if pos:
                    chosen.setdefault(item, float(scores[pool.index[item]]) if item in pool.index else float("nan"))
                else:
                    chosen.pop(item, None)
            user = inputs.user
            try:
                n = add_annotations(conn, [NewAnnotation(session.pool, item, label.path, user, session.id, round_no,
                                                         None if score != score else score)
                                           for item, score in sorted(chosen.items())])
            except AnnotationError as err:
                raise InvalidInput(str(err)) from err
            store.mark_accepted(conn, session)
            conn.commit()
        return "application/json", {"session": str(session.id), "label": label.path, "round": round_no,
                                    "annotated": n, "items": sorted(chosen)[:1000]}
