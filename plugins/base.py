"""Shared pieces of EOFusion's pygeoapi processes: declared inputs, validation, errors and database access.

Every process declares, as class attributes:

- ``inputs_model``: a pydantic model of its inputs. The OGC description's ``inputs`` is generated from it and
  :meth:`EOFusionProcessor.execute` validates every execution with it (400 ``InvalidParameterValue`` naming the
  input and the reason) before calling the process's typed :meth:`EOFusionProcessor.run`.
- ``read_only``: ``True`` only if an execution writes nothing anywhere (no rows, no files). Authorisation reads
  it: any other process needs an API key (``server.auth``), and the job manager stores no result of a
  synchronous read-only run.
- ``cost``: roughly what one execution costs, with the reason.

Bounds that depend on the installation (text length, list lengths, depths) are marked on the model's fields
with :class:`Bound` and filled in from :class:`eofusion.config.Limits`, passed in the processor definition.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from types import UnionType
from typing import Annotated, Any, ClassVar, Generic, TypeVar, Union, get_args, get_origin

import annotated_types
import psycopg
from psycopg_pool import ConnectionPool
from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, ValidationError, create_model
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema
from pygeoapi.process.base import BaseProcessor, ProcessorExecuteError

from catalog.db import connect
from eofusion.config import Limits
from eofusion.errors import EOFusionError, status_of
from eofusion.paths import safe_name

ProgressCallback = Callable[[float, str], Any]


# -- declarations -------------------------------------------------------------------------------------------------


class Weight(StrEnum):
    """How much one execution asks of the server."""

    LIGHT = "light"  # an indexed query or a small computation: well under a second
    HEAVY = "heavy"  # training, simulation or file writing: seconds to minutes of CPU


@dataclass(frozen=True)
class Cost:
    """A process's rough cost and why.

    Attributes:
        weight: Light or heavy.
        reason: One line on what the cost is made of.
    """

    weight: Weight
    reason: str


def open_to_anonymous(processor: type) -> bool:
    """Whether anyone may run a process without an API key: only if it declares itself read-only and light.

    Deny by default: a class that declares neither needs a key, and so does a read-only but heavy process
    (one anonymous request must not tie up the server).
    """
    cost = getattr(processor, "cost", None)
    return getattr(processor, "read_only", False) is True and isinstance(cost, Cost) and cost.weight is Weight.LIGHT


class ProcessInputs(BaseModel):
    """Base of every process's inputs: unknown inputs are refused, types are not coerced ("5" is no integer),
    and NaN or infinite numbers are refused (Python's JSON parser, which pygeoapi uses, reads them)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


@dataclass(frozen=True)
class Bound:
    """Marks a field whose upper bound is a field of :class:`Limits` (``Annotated[list[str], Bound("...")]``).

    Strings and lists get it as their maximum length, numbers as their maximum; ``cap`` keeps a tighter
    bound a process has of its own (the smaller of the two applies).
    """

    limit: str
    cap: int | None = None


#: An id of a collection, item, post or label path as an input: not empty, not huge.
Ident = Annotated[str, StringConstraints(min_length=1, max_length=256)]
#: An id that becomes (part of) a file name on the server (see :func:`eofusion.paths.safe_name`).
FileSafeId = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"),
                       AfterValidator(lambda v: safe_name(v, "id"))]


def _is_number(annotation: Any) -> bool:
    # int, float, or one of them with None (an optional input).
    kinds = {a for a in get_args(annotation) if a is not type(None)} if get_origin(annotation) in (Union, UnionType) \
        else {annotation}
    return bool(kinds) and kinds <= {int, float}


@functools.cache
def bind_limits(model: type[ProcessInputs], limits: Limits) -> type[ProcessInputs]:
    """A subclass of ``model`` whose :class:`Bound` fields carry the installation's limits."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        bounds = [m for m in info.metadata if isinstance(m, Bound)]
        if not bounds:
            continue
        value = getattr(limits, bounds[0].limit)
        if bounds[0].cap is not None:
            value = min(value, bounds[0].cap)
        bound = copy.copy(info)
        number = _is_number(info.annotation)
        bound.metadata = [*info.metadata, annotated_types.Le(value) if number else annotated_types.MaxLen(value)]
        fields[name] = (info.annotation, bound)
    if not fields:
        return model
    return create_model(model.__name__, __base__=model, __module__=model.__module__, __doc__=model.__doc__,
                        **fields)


class InputSchema(GenerateJsonSchema):
    """JSON schemas of process inputs: an optional input is just absent, so ``X | None`` is described as ``X``."""

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        """The schema of the non-null value."""
        return self.generate_inner(schema["schema"])


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    # OGC process descriptions carry each input's schema on its own: no shared $defs to refer to.
    if isinstance(node, dict):
        if "$ref" in node and node["$ref"].startswith("#/$defs/"):
            target = _inline(defs[node["$ref"].rsplit("/", 1)[1]], defs)
            return {**target, **{k: _inline(v, defs) for k, v in node.items() if k != "$ref"}}
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def input_schemas(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """Each input's JSON schema (nested models inlined), with its title and description."""
    schema = model.model_json_schema(schema_generator=InputSchema)
    defs = schema.get("$defs", {})
    return {name: _inline(prop, defs) for name, prop in schema.get("properties", {}).items()}


def describe_inputs(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """The OGC API - Processes ``inputs`` of a process description, generated from its inputs model."""
    out: dict[str, dict[str, Any]] = {}
    fields = {info.alias or name: info for name, info in model.model_fields.items()}
    for name, schema in input_schemas(model).items():
        schema = dict(schema)
        title = schema.pop("title", name)
        description = schema.pop("description", None)
        if schema.get("default", 0) is None:
            del schema["default"]  # absent; nothing to show
        entry: dict[str, Any] = {"title": title}
        if description:
            entry["description"] = description
        entry.update({"schema": schema, "minOccurs": 1 if fields[name].is_required() else 0,
                      "maxOccurs": 1})
        out[name] = entry
    return out


# -- errors -------------------------------------------------------------------------------------------------------

#: The OGC exception code of each HTTP status a process answers with.
OGC_CODES: dict[int, str] = {400: "InvalidParameterValue", 404: "NotFound", 409: "Conflict", 413: "TooLarge",
                             503: "ServerBusy"}


class ProcessError(ProcessorExecuteError):
    """A process's refusal as pygeoapi answers it: ``http_status_code`` and ``ogc_exception_code`` (OGC shape)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message, user_msg=message)
        self.http_status_code = status
        self.ogc_exception_code = OGC_CODES.get(status, "NoApplicableCode")

    @classmethod
    def of(cls, err: EOFusionError) -> ProcessError:
        """The answer to one of the project's errors, with the status of :func:`eofusion.errors.status_of`."""
        return cls(str(err), status_of(err))


def nul_in(value: Any, where: str = "") -> str | None:
    """Where the first NUL character of a JSON value is (``feedback.0.item``), or None.

    PostgreSQL text cannot hold NUL: such an input would fail in the database instead of being refused.
    """
    if isinstance(value, str):
        return where if "\x00" in value else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        path = f"{where}.{key}" if where else str(key)
        if isinstance(key, str) and "\x00" in key:
            return path
        found = nul_in(item, path)
        if found is not None:
            return found
    return None


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe_validation(err: ValidationError) -> str:
    """The reasons of a failed validation, each naming its input (``feedback.2.positive``)."""
    parts: list[str] = []
    for e in err.errors(include_url=False):
        where = ".".join(str(x) for x in e["loc"])
        if e["type"] == "missing":
            parts.append(f"missing input {where!r}")
        elif e["type"] == "extra_forbidden":
            parts.append(f"unknown input {where!r}")
        else:
            msg = str(e["msg"]).removeprefix("Value error, ")
            parts.append(f"input {where!r}: {msg} (got {_short(e.get('input'))})")
    more = f" (and {len(parts) - 5} more)" if len(parts) > 5 else ""
    return "; ".join(parts[:5]) + more


def limits_of(processor_def: dict[str, Any]) -> Limits:
    """The limits the server put in the processor definition (defaults for fields it left out)."""
    given = processor_def.get("limits") or {}
    known = {f.name for f in dataclasses.fields(Limits)}
    return Limits(**{k: int(v) for k, v in given.items() if k in known})


# -- database -----------------------------------------------------------------------------------------------------

_CONNECTIONS: dict[str, ConnectionPool] = {}
_CONNECTIONS_LOCK = threading.Lock()


def pooled_connection(url: str) -> AbstractContextManager[psycopg.Connection]:
    """A connection from this process's pool for ``url``: commits at the end of the block, rolls back on error.

    A new connection per call costs a TCP + SCRAM handshake (tens of ms on a loaded machine); pooled
    connections also keep psycopg's prepared statements of repeated queries. Processes that answer
    interactively (active-learning rounds, late-fusion search) share one pool per database.
    """
    with _CONNECTIONS_LOCK:
        if url not in _CONNECTIONS:
            # Room for one late-fusion search's six modalities at once (tweet_search.run_concurrently).
            _CONNECTIONS[url] = ConnectionPool(url, min_size=1, max_size=8, open=True,
                                               kwargs={"options": "-c search_path=eofusion,pgstac,public"})
        return _CONNECTIONS[url].connection()


# -- the processor ------------------------------------------------------------------------------------------------

I = TypeVar("I", bound=ProcessInputs)  # noqa: E741 - the usual name of an inputs type variable


class EOFusionProcessor(BaseProcessor, Generic[I]):  # type: ignore[misc]
    """A declared process: typed inputs validated in one place, a database URL, a progress callback.

    Subclasses set ``inputs_model``, ``read_only`` and ``cost`` and implement :meth:`run`.
    """

    inputs_model: ClassVar[type[ProcessInputs]]
    read_only: ClassVar[bool] = False
    cost: ClassVar[Cost]

    def __init__(self, processor_def: dict[str, Any], process_metadata: dict[str, Any]) -> None:
        self.limits = limits_of(processor_def)
        self.inputs_type: type[ProcessInputs] = bind_limits(type(self).inputs_model, self.limits)
        metadata = {**process_metadata, "inputs": describe_inputs(self.inputs_type),
                    "eofusion:readOnly": self.read_only,
                    "eofusion:cost": {"weight": self.cost.weight.value, "reason": self.cost.reason}}
        super().__init__(processor_def, metadata)
        self.database_url: str = processor_def["database_url"]
        self._progress: ProgressCallback | None = None

    def execute(self, data: Any, outputs: Any = None) -> tuple[str, Any]:
        """Validate ``data`` with the inputs model, then :meth:`run`; the project's errors keep their status.

        Raises:
            ProcessError: invalid inputs (400, naming each input and reason), or an
                :class:`eofusion.errors.EOFusionError` of the run with its status (404, 409, 413...).
        """
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ProcessError(f"inputs must be a JSON object of named inputs, got {type(data).__name__}")
        nul = nul_in(data)
        if nul is not None:
            raise ProcessError(f"input {nul!r}: text may not contain NUL characters")
        try:
            inputs = self.inputs_type.model_validate_json(json.dumps(data))
        except ValidationError as err:
            raise ProcessError(describe_validation(err)) from None
        try:
            return self.run(inputs)  # type: ignore[arg-type]
        except EOFusionError as err:
            raise ProcessError.of(err) from err

    def run(self, inputs: I) -> tuple[str, Any]:
        """Execute with validated inputs; returns the MIME type and the result."""
        raise NotImplementedError

    def set_progress_callback(self, callback: ProgressCallback) -> None:
        """Called by the job manager so long runs report progress in the job status."""
        self._progress = callback

    def progress(self, percent: float, message: str) -> None:
        """Report progress when running as a job."""
        if self._progress is not None:
            self._progress(percent, message)

    def connect(self):  # type: ignore[no-untyped-def]
        """A new connection to the catalogue."""
        return connect(self.database_url)

    def pooled(self) -> AbstractContextManager[psycopg.Connection]:
        """A connection from the process's shared pool (see :func:`pooled_connection`)."""
        return pooled_connection(self.database_url)
