"""Shared pieces of EOFusion's pygeoapi processes: typed metadata and database access."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool
from pygeoapi.process.base import BaseProcessor, ProcessorExecuteError

from catalog.db import connect

ProgressCallback = Callable[[float, str], Any]

#: Processes whose execution changes stored data; the server asks for an API key for these.
WRITE_PROCESSES: set[str] = set()


def writes_data(process_id: str) -> Callable[[type], type]:
    """Mark a process class as changing data (its execution needs an API key)."""

    def mark(cls: type) -> type:
        WRITE_PROCESSES.add(process_id)
        return cls

    return mark


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


class EOFusionProcessor(BaseProcessor):
    """A process with a database URL from its configuration and a progress callback."""

    def __init__(self, processor_def: dict[str, Any], process_metadata: dict[str, Any]) -> None:
        super().__init__(processor_def, process_metadata)
        self.database_url: str = processor_def["database_url"]
        self._progress: ProgressCallback | None = None

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


class InputError(ProcessorExecuteError):
    """Invalid process inputs (reported as 400 InvalidParameterValue)."""


def require(data: dict[str, Any], name: str, kind: type) -> Any:
    """Return ``data[name]`` checked against ``kind``.

    Raises:
        InputError: missing or of the wrong type.
    """
    if name not in data or data[name] is None:
        raise InputError(f"missing input {name!r}")
    value = data[name]
    if not isinstance(value, kind):
        raise InputError(f"input {name!r} must be {kind.__name__}, got {type(value).__name__}")
    return value
