"""The server's log keeps tracebacks for server faults only: a client's bad OGC request (400, 404) is answered
without the traceback pygeoapi would write for it (real server, its own log file)."""

from __future__ import annotations

import logging
import sys
import time
import uuid

import httpx

from plugins.jobs import ExecutionError
from server.ogc_logging import ClientErrorFilter
from tests.conftest import API_KEY, DEMO_COLLECTION, Server

KEY = {"X-API-Key": API_KEY}


def test_client_errors_of_processes_leave_no_traceback_in_the_log(server: Server, client: httpx.Client,
                                                                  loaded: dict) -> None:
    start = server.log.stat().st_size
    bad = [
        ("/ogc/processes/accept-annotations/execution", {"inputs": {}}, 400),  # a missing input
        ("/ogc/processes/active-learning-round/execution", {"inputs": {"session": str(uuid.UUID(int=0))}}, 404),
        ("/ogc/processes/active-learning-round/execution", {"inputs": {"pool": DEMO_COLLECTION + "-none"}}, 400),
        ("/ogc/processes/no-such-process/execution", {"inputs": {}}, 404),
        ("/ogc/processes/late-fusion-search/execution", {"inputs": {"text": 5}}, 400),
    ]
    for path, body, status in bad:
        r = client.post(path, json=body, headers=KEY)
        assert r.status_code == status, (path, r.status_code, r.text[:300])
    time.sleep(0.5)  # the log is written by another process
    with server.log.open("rb") as f:
        f.seek(start)
        written = f.read().decode(errors="replace")
    assert "Traceback" not in written, written[-3000:]


def _record(exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        info = sys.exc_info()
    record = logging.LogRecord("pygeoapi.api", logging.ERROR, __file__, 1, "failed", None, info,
                               func="get_exception")
    return record


def test_the_filter_keeps_server_faults_and_other_lines() -> None:
    keep = ClientErrorFilter()
    assert not keep.filter(_record(ExecutionError("bad input", 400, "InvalidParameterValue")))
    assert not keep.filter(_record(ExecutionError("no such session", 404, "NotFound")))
    assert keep.filter(_record(ExecutionError("a bug", 500, "NoApplicableCode")))
    assert keep.filter(_record(RuntimeError("a bug without a status")))
    plain = logging.LogRecord("pygeoapi.api", logging.ERROR, __file__, 1, "no exception", None, None,
                              func="get_exception")
    assert keep.filter(plain)
