"""A pygeoapi process manager that keeps jobs and their results in the project's PostgreSQL.

pygeoapi's own PostgreSQL manager writes results to files and needs psycopg2; this one stores
results in ``eofusion.jobs`` (through :mod:`catalog.jobs`) so a job, its status and its result
survive a restart and need no shared disk between workers. On top of pygeoapi's flow:

- asynchronous executions run on a bounded pool of workers per server process
  (:class:`JobRuntime`: ``limits.job_workers`` running, ``limits.job_queue`` waiting); beyond that
  the execution is refused as busy (503 with ``Retry-After``);
- a synchronous run of a read-only process stores nothing (no job row, no result);
- a job is shown only to the principal that created it, or to anyone for an anonymous run of a
  read-only process; only its creator deletes it;
- a job belongs to the server process that runs it, which beats in ``eofusion.job_owners``; jobs
  of owners that stopped beating are failed, and a final status never changes.
"""

from __future__ import annotations

import contextvars
import logging
import os
import queue
import threading
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool
from pygeoapi.process.base import (
    BaseProcessor,
    JobNotFoundError,
    JobResultNotFoundError,
    ProcessorExecuteError,
)
from pygeoapi.process.manager.base import BaseManager
from pygeoapi.util import JobStatus, RequestedProcessExecutionMode, RequestedResponse

from catalog import jobs as store
from eofusion.config import Limits
from eofusion.errors import Busy, EOFusionError, status_of
from plugins.context import REQUEST_ID, REQUEST_PRINCIPAL

LOGGER = logging.getLogger(__name__)

#: Seconds a refused client is asked to wait: a guess, since a place frees when some running job ends.
RETRY_AFTER_S = 5

_pools: dict[str, ConnectionPool] = {}
_pools_lock = threading.Lock()


def _pool(url: str) -> ConnectionPool:
    # One pool per database for the process: pygeoapi builds managers from its configuration, and the
    # runtime beats on the same connections. Every job write is one statement (autocommit: no separate
    # COMMIT round trip). Job rows are status, not user data, so they are committed without waiting for
    # the WAL flush: an fsync costs ~7 ms here, three per stored synchronous job. A database crash may lose
    # the last fraction of a second of job status (the job then looks interrupted and is failed); what
    # processes write (feedback, rounds, annotations) goes through their own connections, synchronously.
    with _pools_lock:
        if url not in _pools:
            _pools[url] = ConnectionPool(url, min_size=1, max_size=8, open=True, kwargs={
                "options": "-c search_path=eofusion,public -c synchronous_commit=off", "autocommit": True})
        return _pools[url]


# -- what the HTTP layer applies to the response ------------------------------------------------------
@dataclass
class ResponseHints:
    """What the manager tells the HTTP layer about one execution's response.

    Attributes:
        retry_after: Seconds for a ``Retry-After`` header (the execution was refused as busy).
        job_stored: ``False`` when no job row exists (a synchronous read-only run): no ``Location``.
    """

    retry_after: int | None = None
    job_stored: bool = True


#: Set per request by the HTTP layer (``server.jobs_http``); the manager fills it in.
RESPONSE_HINTS: ContextVar[ResponseHints | None] = ContextVar("eofusion_job_response_hints", default=None)


class ServerBusyError(ProcessorExecuteError):
    """The job queue is full: pygeoapi answers 503 (the HTTP layer adds ``Retry-After``)."""

    http_status_code = HTTPStatus.SERVICE_UNAVAILABLE
    ogc_exception_code = "ServerBusy"


class ExecutionError(ProcessorExecuteError):
    """A synchronous execution failed; pygeoapi answers it with this status and OGC exception code."""

    def __init__(self, message: str, status: int, code: str) -> None:
        super().__init__(user_msg=message)
        self.http_status_code = HTTPStatus(status)
        self.ogc_exception_code = code


def _failure(err: Exception) -> tuple[int, str, str]:
    """(HTTP status, OGC exception code, message) of a failed execution."""
    if isinstance(err, EOFusionError):
        status = status_of(err)
        code = {400: "InvalidParameterValue", 404: "NotFound", 409: "Conflict", 413: "TooLarge",
                503: "ServerBusy"}.get(status, "NoApplicableCode")
        return status, code, str(err)
    if isinstance(err, ProcessorExecuteError):
        # A status the process chose (plugins.base.ProcessError) stands; pygeoapi's default (500) on a bare
        # ProcessorExecuteError is the processes' old way of saying "bad input".
        status = int(err.http_status_code)
        if status == HTTPStatus.INTERNAL_SERVER_ERROR:
            return 400, "InvalidParameterValue", str(err)
        return status, str(err.ogc_exception_code), str(err)
    if isinstance(err, ValueError):
        return 400, "InvalidParameterValue", str(err)
    request_id = REQUEST_ID.get()
    suffix = f" (request id {request_id})" if request_id else ""
    return 500, "NoApplicableCode", f"internal error while executing the process{suffix}"


# -- one server process's job machinery ---------------------------------------------------------------
class JobRuntime:
    """The job side of one server process: its owner id, its bounded pool of workers and its heartbeat.

    At most ``limits.job_workers`` asynchronous executions run at once and ``limits.job_queue`` wait;
    :meth:`reserve` refuses more with :class:`eofusion.errors.Busy`. Workers and the heartbeat are daemon
    threads: a stopping server fails its unfinished jobs itself (:meth:`stop`), and a killed one stops
    beating, so that any other server fails them (:func:`catalog.jobs.fail_orphans`).
    """

    def __init__(self, database_url: str, limits: Limits, owner: str | None = None) -> None:
        """Prepare (not start) the runtime.

        Args:
            database_url: libpq URL of the catalogue.
            limits: The server's limits (job_workers, job_queue, job_retention_s, job_heartbeat_s).
            owner: Identifier of this server process in job rows; a new UUID by default.
        """
        self.database_url = database_url
        self.limits = limits
        self.owner = owner or uuid.uuid4().hex
        self.retry_after = RETRY_AFTER_S
        self._slots = threading.BoundedSemaphore(limits.job_workers + limits.job_queue)
        self._tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def pool(self) -> ConnectionPool:
        """The job store's connections."""
        return _pool(self.database_url)

    def start(self) -> None:
        """Beat once, fail the jobs of stopped servers, delete expired jobs, then start workers and heartbeat."""
        self.beat()
        self._threads = [threading.Thread(target=self._work, name=f"eofusion-job-{i}", daemon=True)
                         for i in range(self.limits.job_workers)]
        self._threads.append(threading.Thread(target=self._heartbeat, name="eofusion-job-heartbeat", daemon=True))
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Stop beating and taking jobs; fail this server's unfinished jobs (nobody will finish them)."""
        self._stop.set()
        for _ in range(self.limits.job_workers):
            self._tasks.put(None)
        for t in self._threads:
            if t.name.endswith("heartbeat"):
                t.join(timeout=5)
        try:
            with self.pool.connection() as conn:
                n = store.fail_owned(conn, self.owner, "interrupted: the server stopped during the run",
                                     self.limits.job_retention_s)
                store.drop_owner(conn, self.owner)
            if n:
                LOGGER.warning("%d unfinished job(s) of this server marked failed at shutdown", n)
        except psycopg.Error:
            LOGGER.exception("could not record the shutdown of job owner %s", self.owner)

    def beat(self) -> None:
        """One heartbeat: this server is alive; jobs of stopped servers fail; expired jobs go."""
        with self.pool.connection() as conn:
            store.beat(conn, self.owner, self.limits.job_heartbeat_s)
            failed = store.fail_orphans(conn, self.limits.job_retention_s)
            deleted = store.delete_expired(conn)
        if failed:
            LOGGER.warning("%d job(s) of stopped servers marked failed", failed)
        if deleted:
            LOGGER.info("%d expired job(s) deleted", deleted)

    def reserve(self) -> Callable[[Callable[[], None]], None]:
        """Take a place in the pool for one asynchronous execution.

        Returns:
            A function that queues the execution on the place taken (call it once).

        Raises:
            Busy: ``job_workers`` executions run and ``job_queue`` wait already.
        """
        if self._stop.is_set() or not self._slots.acquire(blocking=False):
            raise Busy(f"the server runs {self.limits.job_workers} job(s) and has {self.limits.job_queue} "
                       "waiting, its limit: try again later", retry_after=self.retry_after)
        taken = [True]

        def submit(run: Callable[[], None]) -> None:
            if not taken:
                raise RuntimeError("a reserved place is used once")
            taken.clear()
            # The job runs with the request's context (principal, request id).
            context = contextvars.copy_context()
            self._tasks.put(lambda: context.run(run))

        return submit

    def release(self) -> None:
        """Give back a place taken by :meth:`reserve` that was not used."""
        self._slots.release()

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            try:
                task()
            except Exception:  # a job's failure is recorded by the job; the worker keeps serving
                LOGGER.exception("job worker: unexpected error")
            finally:
                self._slots.release()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.limits.job_heartbeat_s):
            try:
                self.beat()
            except psycopg.Error:  # the database may be restarting: beat again next time
                LOGGER.exception("job heartbeat failed")


_runtimes: dict[str, JobRuntime] = {}
_runtimes_lock = threading.Lock()


def install_runtime(runtime: JobRuntime) -> None:
    """Make ``runtime`` the one the managers of its database use in this process (server start-up)."""
    with _runtimes_lock:
        _runtimes[runtime.database_url] = runtime


def uninstall_runtime(runtime: JobRuntime) -> None:
    """Forget ``runtime`` (server shutdown)."""
    with _runtimes_lock:
        if _runtimes.get(runtime.database_url) is runtime:
            del _runtimes[runtime.database_url]


def runtime_for(url: str) -> JobRuntime:
    """The runtime installed for ``url``; outside a server (scripts, benches), one started on first use."""
    with _runtimes_lock:
        if url not in _runtimes:
            runtime = JobRuntime(url, Limits.from_env(dict(os.environ)))
            runtime.start()
            _runtimes[url] = runtime
        return _runtimes[url]


# Past any number of jobs there can be, and within PostgreSQL's bigint: a larger offset is an empty page.
_MAX_OFFSET = 2**62


def _plausible_id(job_id: str) -> bool:
    # Job ids are UUIDs; text PostgreSQL cannot hold (NUL) or a huge path segment is simply no job.
    return len(job_id) <= 200 and "\x00" not in job_id


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _as_pygeoapi(row: store.JobRow) -> dict[str, Any]:
    return {"identifier": row.identifier, "type": row.type, "process_id": row.process_id, "status": row.status,
            "message": row.message, "progress": row.progress, "parameters": row.parameters,
            "created": _iso(row.created), "started": _iso(row.started or row.created), "updated": _iso(row.updated),
            "finished": _iso(row.finished), "mimetype": row.mimetype}


class PgJobManager(BaseManager):
    """Jobs in ``eofusion.jobs``; asynchronous runs on this server's bounded pool of workers."""

    def __init__(self, manager_def: dict[str, Any]) -> None:
        super().__init__(manager_def)
        self.is_async = True
        self.supports_subscribing = False
        self.database_url = str(manager_def["connection"])
        self.pool = _pool(self.database_url)

    # -- reading and deleting, as the caller's principal ---------------------------------------------
    def get_jobs(self, status: JobStatus | None = None, limit: int | None = None,
                 offset: int | None = None) -> dict[str, Any]:
        """The caller's jobs (and public ones), newest first, optionally of one status."""
        with self.pool.connection() as conn:
            total, rows = store.list_jobs(conn, REQUEST_PRINCIPAL.get(), status.value if status else None,
                                          limit, min(offset or 0, _MAX_OFFSET))
        return {"jobs": [_as_pygeoapi(r) for r in rows], "numberMatched": total}

    def get_job(self, job_id: str) -> dict[str, Any]:
        """One job the caller may see.

        Raises:
            JobNotFoundError: no such job, or another principal's (the same answer).
        """
        if not _plausible_id(job_id):
            raise JobNotFoundError()
        with self.pool.connection() as conn:
            row = store.get_job(conn, job_id, REQUEST_PRINCIPAL.get())
        if row is None:
            raise JobNotFoundError()
        return _as_pygeoapi(row)

    def get_job_result(self, job_id: str) -> tuple[Any, ...]:
        """The (mimetype, output) of a successful job the caller may see.

        Raises:
            JobResultNotFoundError: no stored result (pygeoapi checked the status just before).
        """
        with self.pool.connection() as conn:
            result = store.job_result(conn, job_id, REQUEST_PRINCIPAL.get())
        if result is None:
            raise JobResultNotFoundError()
        return result.mimetype, result.value

    def delete_job(self, job_id: str) -> bool:
        """Delete a job and its result; only its creator may.

        Raises:
            JobNotFoundError: no such job, or not the caller's (anonymous jobs expire instead).
        """
        principal = REQUEST_PRINCIPAL.get()
        if principal is None or not _plausible_id(job_id):
            raise JobNotFoundError()
        with self.pool.connection() as conn:
            deleted = store.delete_job(conn, job_id, principal)
        if not deleted:
            raise JobNotFoundError()
        return True

    def update_job(self, job_id: str, update_dict: dict[str, Any]) -> bool:
        """Record progress and message of an unfinished job (status changes go through the runtime)."""
        with self.pool.connection() as conn:
            return store.report_progress(conn, job_id, int(update_dict.get("progress", 50)),
                                         str(update_dict.get("message", "Job running")))

    def add_job(self, job_metadata: dict[str, Any]) -> str:
        """Not used: :meth:`execute_process` stores jobs with their principal and owner."""
        raise NotImplementedError("PgJobManager stores jobs in execute_process")

    # -- execution ------------------------------------------------------------------------------------
    def execute_process(self, process_id: str, data_dict: dict[str, Any],
                        execution_mode: RequestedProcessExecutionMode | None = None,
                        requested_outputs: dict[str, Any] | None = None, subscriber: Any = None,
                        requested_response: str | None = RequestedResponse.raw.value,
                        ) -> tuple[str, str, Any, JobStatus, dict[str, str] | None]:
        """Run a process synchronously or queue it, as pygeoapi's API asks.

        Returns:
            (job id, media type, output, status, extra response headers), as pygeoapi expects.

        Raises:
            ServerBusyError: an asynchronous execution while the queue is full (503).
            ExecutionError: a synchronous execution failed (its status: 4xx for the client's mistakes).
        """
        job_id = str(uuid.uuid1())
        processor = self.get_processor(process_id)
        processor.set_job_id(job_id)
        read_only = bool(getattr(processor, "read_only", False))
        run_async = (execution_mode == RequestedProcessExecutionMode.respond_async
                     and "async-execute" in processor.metadata.get("jobControlOptions", []))
        headers: dict[str, str] | None = None
        if execution_mode is not None:
            mode = RequestedProcessExecutionMode.respond_async if run_async else RequestedProcessExecutionMode.wait
            headers = {"Preference-Applied": mode.value}
        response = requested_response or RequestedResponse.raw.value

        if not run_async and read_only:
            # Nothing to keep: the client has the answer, and a read-only run changed nothing.
            hints = RESPONSE_HINTS.get()
            if hints is not None:
                hints.job_stored = False
            try:
                mimetype, outputs = self._run(processor, data_dict, requested_outputs, response)
            except Exception as err:
                raise self._execution_error(job_id, err, log=True) from err
            return job_id, mimetype, outputs, JobStatus.successful, headers

        runtime = runtime_for(self.database_url)
        job = store.NewJob(job_id, process_id, REQUEST_PRINCIPAL.get(), read_only, runtime.owner)
        if run_async:
            try:
                submit = runtime.reserve()
            except Busy as err:
                hints = RESPONSE_HINTS.get()
                if hints is not None:
                    hints.retry_after = err.retry_after
                raise ServerBusyError(user_msg=str(err)) from err
            try:
                with self.pool.connection() as conn:
                    store.insert_job(conn, job)
            except Exception:
                runtime.release()
                raise

            def run() -> None:
                try:
                    self._run_stored(runtime, processor, job_id, data_dict, requested_outputs, response)
                except Exception:  # recorded in the job's status (and logged there if it is a bug)
                    pass

            submit(run)
            # OGC API - Processes answers an asynchronous execution with the job's statusInfo.
            return job_id, "application/json", {"jobID": job_id, "processID": process_id, "type": "process",
                                                "status": JobStatus.accepted.value, "message": "Job accepted"}, \
                JobStatus.accepted, headers

        with self.pool.connection() as conn:
            store.insert_job(conn, job)
        try:
            mimetype, outputs = self._run_stored(runtime, processor, job_id, data_dict, requested_outputs, response)
        except Exception as err:
            raise self._execution_error(job_id, err, log=False) from err
        return job_id, mimetype, outputs, JobStatus.successful, headers

    def _run(self, p: BaseProcessor, data_dict: dict[str, Any], requested_outputs: dict[str, Any] | None,
             requested_response: str) -> tuple[str, Any]:
        extra: dict[str, Any] = {"outputs": requested_outputs} if p.supports_outputs else {}
        mimetype, outputs = p.execute(data_dict, **extra)
        if requested_response == RequestedResponse.document.value:
            outputs = {"outputs": [outputs]}
        return str(mimetype), outputs

    def _run_stored(self, runtime: JobRuntime, p: BaseProcessor, job_id: str, data_dict: dict[str, Any],
                    requested_outputs: dict[str, Any] | None, requested_response: str) -> tuple[str, Any]:
        """Run a stored job: running, progress, then successful with its result or failed with the reason.

        Raises:
            JobNotFoundError: the job was deleted or failed before it started (it is not run).
            Exception: whatever the process raised (the job is failed first).
        """
        retention = runtime.limits.job_retention_s
        with self.pool.connection() as conn:
            if not store.start_job(conn, job_id):
                raise JobNotFoundError(f"job {job_id} was dismissed before it started")
        if hasattr(p, "set_progress_callback"):
            # Progress lands in the job status; writes stop once the job is final.
            def progress(pct: float, msg: str) -> None:
                with self.pool.connection() as c:
                    store.report_progress(c, job_id, int(pct), msg)

            p.set_progress_callback(progress)
        try:
            mimetype, outputs = self._run(p, data_dict, requested_outputs, requested_response)
        except Exception as err:
            status, code, message = _failure(err)
            if status >= 500:
                LOGGER.exception("job %s failed", job_id)
            with self.pool.connection() as conn:
                store.fail_job(conn, job_id, f"{code}: {message}", retention)
            raise
        with self.pool.connection() as conn:
            if not store.finish_job(conn, job_id, mimetype, outputs, retention):
                LOGGER.warning("job %s finished after it was failed or deleted: its result is dropped", job_id)
        return mimetype, outputs

    def _execution_error(self, job_id: str, err: Exception, log: bool) -> ExecutionError:
        status, code, message = _failure(err)
        busy = err if isinstance(err, Busy) else err.__cause__
        hints = RESPONSE_HINTS.get()
        if isinstance(busy, Busy) and hints is not None:
            hints.retry_after = busy.retry_after
        if log and status >= 500:
            LOGGER.error("execution %s failed", job_id, exc_info=err)
        return ExecutionError(message, status, code)

    def __repr__(self) -> str:
        return f"<PgJobManager> {self.name}"
