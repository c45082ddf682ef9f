"""Prior countries of `eofusion ingest tweets`: country names or codes, and per-event priors taken from the
CrisisLexT26 event descriptions (run as a user runs it, on real CrisisLex files)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from catalog.db import connect
from tests.conftest import ROOT, data_path

T26 = data_path("crisislex") / "CrisisLexT26"
MANILA, SARDINIA = "2013_Manila_floods", "2013_Sardinia_floods"


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", "ingest", "tweets", *args], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, **env}, timeout=900)


def _report(out: subprocess.CompletedProcess[str]) -> dict:
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _in_country(db_url: str, collection: str, event: str, code: str) -> int:
    with connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM eofusion.tweets WHERE collection = %s AND event = %s AND "
                           "geometry IS NOT NULL AND properties->'geoparse'->>'country' = %s",
                           (collection, event, code)).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("crisislex-priors")
    for event in (MANILA, SARDINIA):  # read in place through symlinks
        (root / event).symlink_to(T26 / event)
    return root


def test_event_priors_come_from_the_event_descriptions(events: Path, settings_env: dict[str, str],
                                                       db_url: str) -> None:
    with_priors = _report(_run(["crisislex", str(events), "--collection", "priors-auto", "--no-embed",
                                "--no-images"], settings_env))
    # The event files write "Phillipines" and "Italy": resolved against GeoNames' country list.
    assert with_priors["priors"]["events"] == {MANILA: "PH", SARDINIA: "IT"}
    assert with_priors["priors"]["events_without_prior"] == {}
    without = _report(_run(["crisislex", str(events), "--collection", "priors-off", "--no-embed", "--no-images",
                            "--no-event-prior", "--event-prior", f"{SARDINIA}=italy"], settings_env))
    assert without["priors"]["events"] == {SARDINIA: "IT"}
    assert with_priors["stored"] == without["stored"]
    # "Manila", "Marikina"... name places in several countries: the event's country settles more of them.
    assert _in_country(db_url, "priors-auto", MANILA, "PH") > _in_country(db_url, "priors-off", MANILA, "PH")
    assert _in_country(db_url, "priors-auto", SARDINIA, "IT") == _in_country(db_url, "priors-off", SARDINIA, "IT")


def test_prior_country_takes_names_and_codes(settings_env: dict[str, str], db_url: str, tmp_path: Path) -> None:
    path = next((T26 / SARDINIA).glob("*-tweets_labeled.csv"))
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        rows = [{k.strip(): v for k, v in r.items()} for r in csv.DictReader(f)][:20]
    posts = tmp_path / "posts.jsonl"
    posts.write_text("".join(json.dumps({"id_str": r["Tweet ID"].strip("'"), "full_text": r["Tweet Text"]}) + "\n"
                             for r in rows))
    report = _report(_run(["twitter", str(posts), "--collection", "priors-named", "--no-embed", "--no-images",
                           "--prior-country", "italy", "--prior-country", "UK", "--prior-country", "PHL"],
                          settings_env))
    assert report["priors"] == {"countries": ["IT", "GB", "PH"]} and report["stored"] == len(rows)


@pytest.mark.parametrize("args, message", [
    (["--prior-country", "Atlantis"], "unknown country 'Atlantis'"),
    (["--prior-country", "Itly"], "did you mean 'Italy'"),
    (["--event-prior", f"{MANILA}=Narnia"], "unknown country 'Narnia'"),
    (["--event-prior", MANILA], "expected EVENT=COUNTRY"),
])
def test_unknown_countries_are_clear_errors(events: Path, settings_env: dict[str, str], args: list[str],
                                            message: str) -> None:
    out = _run(["crisislex", str(events), "--collection", "priors-bad", *args], settings_env)
    assert out.returncode == 2 and message in out.stderr, out.stderr[-1000:]


def test_event_prior_needs_crisislex(settings_env: dict[str, str], tmp_path: Path) -> None:
    posts = tmp_path / "posts.jsonl"
    posts.write_text("")
    out = _run(["twitter", str(posts), "--event-prior", f"{MANILA}=PH"], settings_env)
    assert out.returncode == 2 and "--event-prior applies to CrisisLex" in out.stderr
