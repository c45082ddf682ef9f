"""The job store: OGC API Processes jobs, their results, who may see them and which server runs them.

A job row carries the principal that asked for it (a hash of the API key, ``None`` when anonymous),
whether its process is read-only, and the owner (the server process running it). A principal sees
its own jobs; anonymous runs of read-only processes are visible to anyone. Every status change is
guarded in SQL: a final status (successful, failed, dismissed) never changes again. Servers beat in
``eofusion.job_owners``; unfinished jobs whose owner stopped beating are failed by whoever looks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

#: Statuses after which a job never changes.
FINAL_STATUSES: tuple[str, ...] = ("successful", "failed", "dismissed")
#: Heartbeats an owner may miss before its unfinished jobs count as interrupted.
MISSED_BEATS = 3

# Who may see a job: its principal, or anyone for an anonymous run of a read-only process.
# ``principal = NULL`` is never true, so an anonymous caller sees only the public jobs.
_VISIBLE = "(principal = %(principal)s OR (principal IS NULL AND read_only))"
_NOT_FINAL = "status NOT IN ('successful', 'failed', 'dismissed')"
_COLUMNS = ("identifier, type, process_id, status, message, progress, parameters, created, started, updated, "
            "finished, mimetype")


@dataclass(frozen=True)
class NewJob:
    """A job about to be queued or run.

    Attributes:
        identifier: The job id (pygeoapi makes a UUID).
        process_id: The process it runs.
        principal: Hash of the caller's API key; ``None`` for an anonymous caller.
        read_only: Whether the process writes nothing (its anonymous jobs are public).
        owner: The server process that runs it.
        message: First status message.
        progress: First progress, in percent.
    """

    identifier: str
    process_id: str
    principal: str | None
    read_only: bool
    owner: str
    message: str = "Job accepted and ready for execution"
    progress: int = 5


@dataclass(frozen=True)
class JobRow:
    """A job's status as OGC API Processes shows it (no result, no principal)."""

    identifier: str
    type: str
    process_id: str
    status: str
    message: str | None
    progress: int
    parameters: Any
    created: datetime
    started: datetime | None
    updated: datetime | None
    finished: datetime | None
    mimetype: str | None


@dataclass(frozen=True)
class JobResult:
    """The stored output of a successful job: JSON (``value`` a dict or list) or bytes."""

    mimetype: str | None
    value: Any


def insert_job(conn: psycopg.Connection, job: NewJob) -> None:
    """Store a new job in status ``accepted``."""
    conn.execute(
        "INSERT INTO eofusion.jobs (identifier, process_id, status, message, progress, created, started, updated, "
        "mimetype, principal, read_only, owner) "
        "VALUES (%s, %s, 'accepted', %s, %s, now(), now(), now(), 'application/octet-stream', %s, %s, %s)",
        (job.identifier, job.process_id, job.message, job.progress, job.principal, job.read_only, job.owner))


def get_job(conn: psycopg.Connection, job_id: str, principal: str | None) -> JobRow | None:
    """The job ``job_id`` if ``principal`` may see it, else ``None`` (missing and hidden look the same)."""
    with conn.cursor(row_factory=class_row(JobRow)) as cur:
        return cur.execute(f"SELECT {_COLUMNS} FROM eofusion.jobs WHERE identifier = %(id)s AND {_VISIBLE}",
                           {"id": job_id, "principal": principal}).fetchone()


def list_jobs(conn: psycopg.Connection, principal: str | None, status: str | None = None,
              limit: int | None = None, offset: int = 0) -> tuple[int, list[JobRow]]:
    """The jobs ``principal`` may see, newest first: (how many match, one page of them)."""
    args: dict[str, Any] = {"principal": principal, "status": status, "limit": limit, "offset": offset}
    where = f"WHERE {_VISIBLE}" + (" AND status = %(status)s" if status is not None else "")
    row = conn.execute(f"SELECT count(*) FROM eofusion.jobs {where}", args).fetchone()
    with conn.cursor(row_factory=class_row(JobRow)) as cur:
        rows = cur.execute(f"SELECT {_COLUMNS} FROM eofusion.jobs {where} ORDER BY created DESC, identifier "
                           "LIMIT %(limit)s OFFSET %(offset)s", args).fetchall()
    return (int(row[0]) if row else 0), rows


def job_result(conn: psycopg.Connection, job_id: str, principal: str | None) -> JobResult | None:
    """The result of a successful job ``principal`` may see; ``None`` when there is none to show."""
    row = conn.execute(
        "SELECT mimetype, result_json, result_bytes FROM eofusion.jobs "
        f"WHERE identifier = %(id)s AND status = 'successful' AND {_VISIBLE}",
        {"id": job_id, "principal": principal}).fetchone()
    if row is None or (row[1] is None and row[2] is None):
        return None
    return JobResult(row[0], row[1] if row[1] is not None else bytes(row[2]))


def delete_job(conn: psycopg.Connection, job_id: str, principal: str) -> bool:
    """Delete a job and its result if ``principal`` created it; whether a row went."""
    cur = conn.execute("DELETE FROM eofusion.jobs WHERE identifier = %s AND principal = %s", (job_id, principal))
    return cur.rowcount == 1


def start_job(conn: psycopg.Connection, job_id: str) -> bool:
    """Move an accepted job to ``running``; ``False`` when it is gone or no longer accepted (deleted, failed)."""
    cur = conn.execute(
        "UPDATE eofusion.jobs SET status = 'running', message = 'Job running', progress = 10, started = now(), "
        "updated = now() WHERE identifier = %s AND status = 'accepted'", (job_id,))
    return cur.rowcount == 1


def report_progress(conn: psycopg.Connection, job_id: str, progress: int, message: str) -> bool:
    """Record a running job's progress; ``False`` (nothing written) once the job is final or gone."""
    cur = conn.execute(
        f"UPDATE eofusion.jobs SET progress = %s, message = %s, updated = now() WHERE identifier = %s AND {_NOT_FINAL}",
        (max(0, min(100, int(progress))), message, job_id))
    return cur.rowcount == 1


def finish_job(conn: psycopg.Connection, job_id: str, mimetype: str, result: Any, retention_s: int) -> bool:
    """Mark a job successful with its result (JSON for dicts and lists, else bytes), kept ``retention_s``.

    Returns:
        Whether the job was still unfinished (a job already failed, e.g. as interrupted, stays failed).
    """
    is_json = isinstance(result, (dict, list))
    if is_json:
        data: bytes | None = None
    elif isinstance(result, bytes):
        data = result
    else:
        data = str(result).encode()
    cur = conn.execute(
        "UPDATE eofusion.jobs SET status = 'successful', message = 'Job complete', progress = 100, "
        "finished = now(), updated = now(), expires = now() + make_interval(secs => %s), mimetype = %s, "
        f"result_json = %s, result_bytes = %s WHERE identifier = %s AND {_NOT_FINAL}",
        (retention_s, mimetype, Jsonb(result) if is_json else None, data, job_id))
    return cur.rowcount == 1


def fail_job(conn: psycopg.Connection, job_id: str, message: str, retention_s: int) -> bool:
    """Mark an unfinished job failed with ``message``; ``False`` when it was final already or is gone."""
    cur = conn.execute(
        "UPDATE eofusion.jobs SET status = 'failed', message = %s, finished = now(), updated = now(), "
        f"expires = now() + make_interval(secs => %s), mimetype = 'application/json' "
        f"WHERE identifier = %s AND {_NOT_FINAL}", (message, retention_s, job_id))
    return cur.rowcount == 1


def beat(conn: psycopg.Connection, owner: str, heartbeat_s: int) -> None:
    """Record that server process ``owner`` is alive and beats every ``heartbeat_s`` seconds."""
    conn.execute(
        "INSERT INTO eofusion.job_owners (owner, heartbeat_s) VALUES (%s, %s) "
        "ON CONFLICT (owner) DO UPDATE SET beat = now(), heartbeat_s = EXCLUDED.heartbeat_s",
        (owner, heartbeat_s))


def drop_owner(conn: psycopg.Connection, owner: str) -> None:
    """Forget a server process that stops (its heartbeat row)."""
    conn.execute("DELETE FROM eofusion.job_owners WHERE owner = %s", (owner,))


def fail_orphans(conn: psycopg.Connection, retention_s: int) -> int:
    """Fail unfinished jobs whose owner stopped beating (missed :data:`MISSED_BEATS` of its own beats).

    Jobs of live owners, this server's or another's on the same database, are left alone.

    Returns:
        How many jobs were failed.
    """
    cur = conn.execute(
        "UPDATE eofusion.jobs j SET status = 'failed', "
        "message = 'interrupted: the server running it stopped', finished = now(), updated = now(), "
        "expires = now() + make_interval(secs => %(retention)s), mimetype = 'application/json' "
        "WHERE j.status IN ('accepted', 'running') AND NOT EXISTS ("
        "  SELECT 1 FROM eofusion.job_owners o WHERE o.owner = j.owner "
        "  AND o.beat > now() - make_interval(secs => %(missed)s * o.heartbeat_s))",
        {"retention": retention_s, "missed": MISSED_BEATS})
    conn.execute("DELETE FROM eofusion.job_owners WHERE beat < now() - make_interval(secs => %s * heartbeat_s)",
                 (MISSED_BEATS,))
    return cur.rowcount


def fail_owned(conn: psycopg.Connection, owner: str, message: str, retention_s: int) -> int:
    """Fail the unfinished jobs of ``owner`` (a server stopping); returns how many."""
    cur = conn.execute(
        "UPDATE eofusion.jobs SET status = 'failed', message = %s, finished = now(), updated = now(), "
        "expires = now() + make_interval(secs => %s), mimetype = 'application/json' "
        "WHERE owner = %s AND status IN ('accepted', 'running')", (message, retention_s, owner))
    return cur.rowcount


def delete_expired(conn: psycopg.Connection) -> int:
    """Delete finished jobs (and their results) past their retention; returns how many."""
    cur = conn.execute("DELETE FROM eofusion.jobs WHERE expires < now()")
    return cur.rowcount
