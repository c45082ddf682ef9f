"""A pygeoapi process manager that keeps jobs and their results in the project's PostgreSQL.

pygeoapi's own PostgreSQL manager writes results to files and needs psycopg2; this one
stores results in ``eofusion.jobs`` (JSON or bytes) so a job, its status and its result
survive a restart of the server and need no shared disk between workers.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from pygeoapi.process.base import (
    BaseProcessor,
    JobNotFoundError,
    JobResultNotFoundError,
    ProcessorExecuteError,
)
from pygeoapi.process.manager.base import BaseManager
from pygeoapi.util import JobStatus, RequestedResponse, get_current_datetime

LOGGER = logging.getLogger(__name__)

_COLUMNS = (
    "identifier", "type", "process_id", "status", "message", "progress", "parameters",
    "created", "started", "updated", "finished", "mimetype",
)
_TIMES = ("created", "started", "updated", "finished")

_pools: dict[str, ConnectionPool] = {}


def _pool(url: str) -> ConnectionPool:
    # pygeoapi builds a manager per request: share one pool per database. Every job write is one
    # statement (autocommit: no separate COMMIT round trip). Job rows are status, not user data, so
    # they are committed without waiting for the WAL flush: an fsync costs ~7 ms here, three per
    # synchronous job. A database crash may lose the last fraction of a second of job status (the
    # job then looks interrupted and is marked failed at start-up); what processes write (feedback,
    # rounds, annotations) goes through their own connections with the default, synchronous commit.
    if url not in _pools:
        _pools[url] = ConnectionPool(url, min_size=1, max_size=8, open=True, kwargs={
            "options": "-c search_path=eofusion,public -c synchronous_commit=off", "autocommit": True})
    return _pools[url]


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


class PgJobManager(BaseManager):
    """Jobs in ``eofusion.jobs``; asynchronous runs in a background thread."""

    def __init__(self, manager_def: dict[str, Any]) -> None:
        super().__init__(manager_def)
        self.is_async = True
        self.supports_subscribing = False
        self.pool = _pool(str(manager_def["connection"]))

    # -- storage -------------------------------------------------------------------------
    def _row(self, job: dict[str, Any]) -> dict[str, Any]:
        out = {k: _iso(v) for k, v in job.items() if k in _COLUMNS}
        out.setdefault("started", out.get("created"))
        return out

    def get_jobs(self, status: JobStatus | None = None, limit: int | None = None,
                 offset: int | None = None) -> dict[str, Any]:
        """Jobs, newest first, optionally of one status."""
        where = "WHERE status = %(status)s" if status is not None else ""
        args = {"status": status.value if status is not None else None,
                "limit": limit, "offset": offset or 0}
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            total = cur.execute(f"SELECT count(*) AS n FROM jobs {where}", args).fetchone()["n"]  # type: ignore[index]
            rows = cur.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM jobs {where} ORDER BY created DESC "
                "LIMIT %(limit)s OFFSET %(offset)s", args).fetchall()
        return {"jobs": [self._row(r) for r in rows], "numberMatched": total}

    def add_job(self, job_metadata: dict[str, Any]) -> str:
        """Insert a job record."""
        cols = [c for c in _COLUMNS if c in job_metadata]
        vals = [Jsonb(job_metadata[c]) if c == "parameters" else job_metadata[c] for c in cols]
        with self.pool.connection() as conn:
            conn.execute(f"INSERT INTO jobs ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})", vals)
        return str(job_metadata["identifier"])

    def update_job(self, job_id: str, update_dict: dict[str, Any]) -> bool:
        """Update a job's status fields."""
        cols = [c for c in update_dict if c in _COLUMNS and c != "identifier"]
        if not cols:
            return True
        sets = ", ".join(f"{c} = %s" for c in cols)
        vals = [Jsonb(update_dict[c]) if c == "parameters" else update_dict[c] for c in cols]
        with self.pool.connection() as conn:
            cur = conn.execute(f"UPDATE jobs SET {sets} WHERE identifier = %s", [*vals, job_id])
        return cur.rowcount == 1

    def get_job(self, job_id: str) -> dict[str, Any]:
        """One job.

        Raises:
            JobNotFoundError: no job has that identifier.
        """
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE identifier = %s",
                              (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError()
        return self._row(row)

    def get_job_result(self, job_id: str) -> tuple[Any, ...]:
        """The (mimetype, output) of a finished job; ``(None,)`` while it is not finished."""
        job = self.get_job(job_id)
        if JobStatus[job["status"]] != JobStatus.successful:
            return (None,)
        with self.pool.connection() as conn:
            row = conn.execute("SELECT mimetype, result_json, result_bytes FROM jobs WHERE identifier = %s",
                               (job_id,)).fetchone()
        if row is None or (row[1] is None and row[2] is None):
            raise JobResultNotFoundError()
        return row[0], (row[1] if row[1] is not None else bytes(row[2]))

    def delete_job(self, job_id: str) -> bool:
        """Delete a job and its result."""
        self.get_job(job_id)
        with self.pool.connection() as conn:
            cur = conn.execute("DELETE FROM jobs WHERE identifier = %s", (job_id,))
        return cur.rowcount == 1

    # -- execution -----------------------------------------------------------------------
    def _execute_handler_sync(self, p: BaseProcessor, job_id: str, data_dict: dict[str, Any],
                              requested_outputs: dict[str, Any] | None = None, subscriber: Any = None,
                              requested_response: Any = RequestedResponse.raw.value) -> tuple[str, Any, JobStatus]:
        extra: dict[str, Any] = {}
        if p.supports_outputs:
            extra["outputs"] = requested_outputs
        self.update_job(job_id, {"status": JobStatus.running.value, "updated": get_current_datetime(),
                                 "message": "Job running", "progress": 10})
        try:
            # Processes may report progress through this callback (stored in the job status).
            if hasattr(p, "set_progress_callback"):
                p.set_progress_callback(lambda pct, msg: self.update_job(
                    job_id, {"progress": int(pct), "message": msg, "updated": get_current_datetime()}))
            mimetype, outputs = p.execute(data_dict, **extra)
            if requested_response == RequestedResponse.document.value:
                outputs = {"outputs": [outputs]}
            is_json = isinstance(outputs, (dict, list))
            with self.pool.connection() as conn:
                conn.execute(
                    "UPDATE jobs SET status = %s, message = 'Job complete', progress = 100, finished = now(), "
                    "updated = now(), mimetype = %s, result_json = %s, result_bytes = %s WHERE identifier = %s",
                    (JobStatus.successful.value, mimetype,
                     Jsonb(outputs) if is_json else None,
                     None if is_json else (outputs if isinstance(outputs, bytes) else json.dumps(outputs).encode()),
                     job_id))
            return mimetype, outputs, JobStatus.successful
        except Exception as err:  # the job records any failure; the caller gets an OGC exception
            LOGGER.exception("job %s failed", job_id)
            bad_input = isinstance(err, (ValueError, ProcessorExecuteError))
            code = "InvalidParameterValue" if bad_input else "NoApplicableCode"
            outputs = {"type": code, "code": code, "description": f"Error executing process: {err}"}
            self.update_job(job_id, {"status": JobStatus.failed.value, "finished": get_current_datetime(),
                                     "updated": get_current_datetime(), "mimetype": "application/json",
                                     "message": f"{code}: {err}"})
            return "application/json", outputs, JobStatus.failed

    def _execute_handler_async(self, p: BaseProcessor, job_id: str, data_dict: dict[str, Any],
                               requested_outputs: dict[str, Any] | None = None, subscriber: Any = None,
                               requested_response: Any = RequestedResponse.raw.value) -> tuple[str, Any, JobStatus]:
        mimetype, _, status = super()._execute_handler_async(p, job_id, data_dict, requested_outputs, subscriber,
                                                             requested_response)
        # OGC API - Processes answers an asynchronous execution with the job's statusInfo.
        return mimetype, {"jobID": job_id, "processID": p.metadata["id"], "type": "process",
                          "status": status.value, "message": "Job accepted"}, status

    def fail_interrupted(self) -> int:
        """Mark jobs left running by a stopped server as failed; returns how many."""
        with self.pool.connection() as conn:
            cur = conn.execute(
                "UPDATE jobs SET status = 'failed', message = 'interrupted: the server stopped during the run', "
                "finished = now(), updated = now() WHERE status IN ('accepted', 'running')")
        return cur.rowcount

    def __repr__(self) -> str:
        return f"<PgJobManager> {self.name}"
