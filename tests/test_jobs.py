"""Jobs of OGC API Processes on real servers and the real catalogue: a bounded queue, retention,
ownership by principal, ownership by server process (heartbeats) and final statuses that never change.

Servers of their own (``start_server`` on the session's database) get small limits or a second key.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from catalog.db import connect
from tests.conftest import API_KEY, Server, start_server

OTHER_KEY = "other-key"
A = {"X-API-Key": API_KEY}
B = {"X-API-Key": OTHER_KEY}
ASYNC = {"Prefer": "respond-async"}
# A validation run of some seconds on the EuroSAT patches (keyed: it writes a report).
SLOW_VALIDATE = {"collection": "eurosat", "descriptors": ["s2", "s1"], "rounds": 20, "seeds": 30}
FINAL = ("successful", "failed", "dismissed")


def execute(srv: Server, process: str, inputs: dict[str, Any], headers: dict[str, str] | None = None,
            async_: bool = False) -> httpx.Response:
    return httpx.post(f"{srv.url}/ogc/processes/{process}/execution", json={"inputs": inputs},
                      headers={**(headers or {}), **(ASYNC if async_ else {})}, timeout=120)


def job_id_of(r: httpx.Response) -> str:
    assert r.status_code == 201, r.text
    return r.headers["location"].rstrip("/").rsplit("/", 1)[-1]


def status(srv: Server, job_id: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(f"{srv.url}/ogc/jobs/{job_id}", params={"f": "json"}, headers=headers or {}, timeout=30)


def wait_until(srv: Server, job_id: str, headers: dict[str, str] | None, done: tuple[str, ...] = FINAL,
               timeout: float = 300, progress: int = 0) -> dict[str, Any]:
    """Poll a job's status until it is one of ``done`` (and reached ``progress``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = status(srv, job_id, headers)
        assert r.status_code == 200, r.text
        st = r.json()
        if st["status"] in done and st["progress"] >= progress:
            return st
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never reached {done} (last: {st})")


def listed(srv: Server, headers: dict[str, str] | None = None) -> set[str]:
    r = httpx.get(f"{srv.url}/ogc/jobs", params={"f": "json", "limit": 10000}, headers=headers or {}, timeout=30)
    assert r.status_code == 200, r.text
    return {j["jobID"] for j in r.json()["jobs"]}


def reports(data_dir: Path) -> set[str]:
    """Validation reports written under ``data_dir``: the plot, written last, just before the run returns."""
    folder = data_dir / "files" / "reports"
    return {p.name for p in folder.glob("validation-*.png")} if folder.exists() else set()


@pytest.fixture(scope="module")
def keyed_server(loaded: dict, archives: dict, settings_env: dict[str, str], data_dir: Path) -> Iterator[Server]:
    """A server of the session's database that knows a second key (a second principal)."""
    # One BLAS thread: its long validations leave the other core to the servers that start beside it.
    srv = start_server({**settings_env, "EOFUSION_API_KEYS": f"{API_KEY},{OTHER_KEY}", "OMP_NUM_THREADS": "1",
                        "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}, data_dir / "jobs-keyed.log")
    yield srv
    srv.stop()


def test_full_queue_answers_503_with_retry_after(loaded: dict, archives: dict, settings_env: dict[str, str],
                                                 data_dir: Path) -> None:
    srv = start_server({**settings_env, "EOFUSION_LIMIT_JOB_WORKERS": "1", "EOFUSION_LIMIT_JOB_QUEUE": "1"},
                       data_dir / "jobs-queue.log")
    try:
        running = job_id_of(execute(srv, "validate", SLOW_VALIDATE, A, async_=True))
        wait_until(srv, running, A, done=("running",), timeout=120, progress=20)
        waiting = job_id_of(execute(srv, "list-labels", {"level": 1}, async_=True))
        before = listed(srv)
        refused = execute(srv, "list-labels", {"level": 1}, async_=True)
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["retry-after"]) >= 1
        body = refused.json()
        assert body["code"] == "ServerBusy" and "try again" in body["description"]
        assert "location" not in refused.headers
        # The one worker is busy: the queued job waits; a refused one left no job behind.
        assert status(srv, running, A).json()["status"] == "running"
        assert status(srv, waiting).json()["status"] == "accepted"
        assert waiting in before and listed(srv) == before
        # Synchronous executions do not queue.
        sync = execute(srv, "list-labels", {"level": 1})
        assert sync.status_code == 200 and len(sync.json()["labels"]) == 6
    finally:
        srv.stop()


def test_synchronous_read_only_runs_store_nothing(keyed_server: Server, db_url: str) -> None:
    def rows(process: str) -> int:
        with connect(db_url) as conn:
            row = conn.execute("SELECT count(*) FROM eofusion.jobs WHERE process_id = %s", (process,)).fetchone()
        return int(row[0]) if row else 0

    before = rows("list-labels")
    for headers in ({}, A):
        r = execute(keyed_server, "list-labels", {"level": 1}, headers)
        assert r.status_code == 200 and len(r.json()["labels"]) == 6
        assert "location" not in r.headers  # no job to point at
    r = execute(keyed_server, "list-labels", {"level": 1}, headers={"Prefer": "wait"})
    assert r.status_code == 200 and "location" not in r.headers
    assert rows("list-labels") == before
    # An asynchronous run of the same process is kept: its client fetches the result later.
    job = job_id_of(execute(keyed_server, "list-labels", {"level": 1}, async_=True))
    assert wait_until(keyed_server, job, None)["status"] == "successful"
    assert rows("list-labels") == before + 1


def test_retention_deletes_finished_jobs(loaded: dict, settings_env: dict[str, str], data_dir: Path,
                                         db_url: str) -> None:
    # A finished job left by an earlier server, expired long ago: gone once a server starts.
    old = f"old-{uuid.uuid4()}"
    with connect(db_url) as conn:
        conn.execute("INSERT INTO eofusion.jobs (identifier, process_id, status, created, finished, expires) "
                     "VALUES (%s, 'list-labels', 'successful', now() - interval '9 days', "
                     "now() - interval '8 days', now() - interval '1 day')", (old,))
        conn.commit()
    srv = start_server({**settings_env, "EOFUSION_LIMIT_JOB_RETENTION_S": "2", "EOFUSION_LIMIT_JOB_HEARTBEAT_S": "1"},
                       data_dir / "jobs-retention.log")
    try:
        with connect(db_url) as conn:
            assert conn.execute("SELECT 1 FROM eofusion.jobs WHERE identifier = %s", (old,)).fetchone() is None
        job = job_id_of(execute(srv, "list-labels", {"level": 2}, async_=True))
        assert wait_until(srv, job, None)["status"] == "successful"
        results = httpx.get(f"{srv.url}/ogc/jobs/{job}/results", params={"f": "json"}, timeout=30)
        assert results.status_code == 200 and results.json()["labels"]
        # Kept 2 s after it finished, deleted by a heartbeat's sweep soon after (a beat a second).
        deadline = time.monotonic() + 30
        while status(srv, job).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert status(srv, job).status_code == 404
        with connect(db_url) as conn:
            assert conn.execute("SELECT 1 FROM eofusion.jobs WHERE identifier = %s", (job,)).fetchone() is None
    finally:
        srv.stop()


def test_jobs_are_shown_only_to_their_principal(keyed_server: Server) -> None:
    srv = keyed_server
    mine = job_id_of(execute(srv, "list-labels", {"level": 1}, A, async_=True))
    assert wait_until(srv, mine, A)["status"] == "successful"
    assert httpx.get(f"{srv.url}/ogc/jobs/{mine}/results", params={"f": "json"}, headers=A,
                     timeout=30).status_code == 200
    # Another key and anonymous callers: as if the job did not exist (404, not listed, no results).
    for other in (B, None):
        assert status(srv, mine, other).status_code == 404
        res = httpx.get(f"{srv.url}/ogc/jobs/{mine}/results", params={"f": "json"}, headers=other or {}, timeout=30)
        assert res.status_code == 404 and "labels" not in res.text
        assert mine not in listed(srv, other)
    assert mine in listed(srv, A)
    assert httpx.delete(f"{srv.url}/ogc/jobs/{mine}", headers=B, timeout=30).status_code == 404
    assert status(srv, mine, A).status_code == 200  # still there
    # An anonymous run of a read-only process is anyone's to read, nobody's to delete.
    public = job_id_of(execute(srv, "list-labels", {"level": 2}, async_=True))
    assert wait_until(srv, public, None)["status"] == "successful"
    for anyone in (A, B, None):
        assert status(srv, public, anyone).status_code == 200
        assert public in listed(srv, anyone)
    assert httpx.delete(f"{srv.url}/ogc/jobs/{public}", headers=B, timeout=30).status_code == 404
    assert httpx.delete(f"{srv.url}/ogc/jobs/{public}", timeout=30).status_code == 401
    # The owner deletes its own job.
    assert httpx.delete(f"{srv.url}/ogc/jobs/{mine}", headers=A, timeout=30).status_code == 200
    assert status(srv, mine, A).status_code == 404


def test_a_second_server_does_not_fail_the_running_job_of_the_first(keyed_server: Server, settings_env: dict,
                                                                    data_dir: Path) -> None:
    # Long enough to outlast the second server's start-up on a loaded machine.
    job = job_id_of(execute(keyed_server, "validate", {**SLOW_VALIDATE, "seeds": 50}, A, async_=True))
    wait_until(keyed_server, job, A, done=("running",), timeout=120, progress=20)
    other = start_server(settings_env, data_dir / "jobs-second.log")
    try:
        # Both servers answer for the job: the first is alive and beating, so the job runs on.
        assert status(other, job, A).json()["status"] == "running"
        assert status(keyed_server, job, A).json()["status"] == "running"
    finally:
        other.stop()
    assert wait_until(keyed_server, job, A)["status"] == "successful"


def test_a_failed_job_never_becomes_successful(loaded: dict, archives: dict, settings_env: dict[str, str],
                                              db_url: str, tmp_path: Path) -> None:
    # A server of its own files folder (same database): the report that appears there is this job's.
    env = {**settings_env, "EOFUSION_DATABASE_URL": db_url, "EOFUSION_DATA_DIR": str(tmp_path)}
    srv = start_server(env, tmp_path / "server.log")
    try:
        job = job_id_of(execute(srv, "validate", SLOW_VALIDATE, A, async_=True))
        wait_until(srv, job, A, done=("running",), timeout=120, progress=20)
        # Fail it under the run, as a server that believed its owner dead would.
        with connect(db_url) as conn:
            cur = conn.execute("UPDATE eofusion.jobs SET status = 'failed', message = 'interrupted (test)', "
                               "finished = now() WHERE identifier = %s AND status = 'running'", (job,))
            conn.commit()
        assert cur.rowcount == 1, "the validation ended before the test could fail it: make it longer"
        # The run goes on to its end (it writes its plot last), then must leave the failure as it is.
        deadline = time.monotonic() + 300
        while not reports(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert reports(tmp_path), "the validation did not finish"
        time.sleep(3)
        st = status(srv, job, A).json()
        assert st["status"] == "failed" and "interrupted (test)" in st["message"]
        res = httpx.get(f"{srv.url}/ogc/jobs/{job}/results", params={"f": "json"}, headers=A, timeout=30)
        assert res.status_code == 400 and "after_last_round" not in res.text
    finally:
        srv.stop()


def test_start_up_fails_only_jobs_of_servers_that_stopped_beating(loaded: dict, settings_env: dict[str, str],
                                                                  data_dir: Path, db_url: str) -> None:
    dead, live = f"dead-{uuid.uuid4().hex}", f"live-{uuid.uuid4().hex}"
    dead_job, live_job = f"job-{uuid.uuid4()}", f"job-{uuid.uuid4()}"
    with connect(db_url) as conn:
        # A server that beat every 10 s but not for a minute, and one that beat just now (every 10 min).
        conn.execute("INSERT INTO eofusion.job_owners (owner, beat, heartbeat_s) VALUES "
                     "(%s, now() - interval '60 seconds', 10), (%s, now(), 600)", (dead, live))
        for job, owner in ((dead_job, dead), (live_job, live)):
            conn.execute("INSERT INTO eofusion.jobs (identifier, process_id, status, started, owner, principal) "
                         "VALUES (%s, 'validate', 'running', now(), %s, 'someone')", (job, owner))
        conn.commit()
    srv = start_server(settings_env, data_dir / "jobs-orphans.log")
    try:
        with connect(db_url) as conn:
            rows = dict(conn.execute("SELECT identifier, status FROM eofusion.jobs WHERE identifier IN (%s, %s)",
                                     (dead_job, live_job)).fetchall())
            owners = {r[0] for r in conn.execute("SELECT owner FROM eofusion.job_owners")}
        assert rows == {dead_job: "failed", live_job: "running"}
        assert live in owners and dead not in owners
    finally:
        srv.stop()
        with connect(db_url) as conn:
            conn.execute("DELETE FROM eofusion.jobs WHERE identifier IN (%s, %s)", (dead_job, live_job))
            conn.execute("DELETE FROM eofusion.job_owners WHERE owner = %s", (live,))
            conn.commit()


def test_odd_job_ids_and_offsets_are_no_server_errors(keyed_server: Server) -> None:
    srv = keyed_server
    for job in ("%00", "x%00y", "a" * 5000):
        assert httpx.get(f"{srv.url}/ogc/jobs/{job}", params={"f": "json"}, timeout=30).status_code == 404
        assert httpx.get(f"{srv.url}/ogc/jobs/{job}/results", params={"f": "json"}, timeout=30).status_code == 404
        assert httpx.delete(f"{srv.url}/ogc/jobs/{job}", headers=A, timeout=30).status_code == 404
    r = httpx.get(f"{srv.url}/ogc/jobs", params={"f": "json", "offset": str(10**30)}, timeout=30)
    assert r.status_code == 200 and r.json()["jobs"] == []
    assert httpx.get(f"{srv.url}/ogc/jobs", params={"f": "json", "offset": "-1"}, timeout=30).status_code == 400
