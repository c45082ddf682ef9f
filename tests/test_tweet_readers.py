"""Tweet readers on the real CrisisLex files and on hand-written Twitter API v1.1/v2 documents.

The CrisisLex data are the files in ``../shared/data/crisislex``, or their subset in tests/fixtures (``data_path``):
expected counts are read from the files themselves. Twitter API dumps are not
available, so the v1.1 and v2 documents below are written by hand with the APIs' structure
(field names, nesting, GeoJSON order) and the broken records a real stream contains.
"""

from __future__ import annotations

import csv
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eofusion.readers.errors import InputDataError
from eofusion.readers.tweets import (
    DUPLICATE_ID,
    INVALID_COORDINATES,
    INVALID_TIME,
    LINE_TOO_LONG,
    MALFORMED_JSON,
    MALFORMED_ROW,
    MISSING_ID,
    MISSING_TEXT,
    NOT_A_TWEET,
    TEXT_TOO_LONG,
    TIME_FROM_ID,
    CsvColumns,
    IngestReport,
    ReaderConfig,
    check_lon_lat,
    crisislex_event_info,
    crisislex_events,
    extract_hashtags,
    hash_user_id,
    normalize_lang,
    parse_time,
    parse_twitter_objects,
    read_crisislex,
    read_crisislex_t6,
    read_crisislex_t26,
    read_csv_tweets,
    read_twitter_json,
    time_from_snowflake,
)
from tests.conftest import data_path

CRISISLEX = data_path("crisislex")
T26 = CRISISLEX / "CrisisLexT26"
T6 = CRISISLEX / "CrisisLexT6"
COLORADO = T26 / "2013_Colorado_floods"
SALT = "test-salt"


def _labelled_ids(event: Path) -> list[str]:
    """The tweet ids of an event's labelled file, read with the csv module alone (not by the reader under test)."""
    with next(event.glob("*-tweets_labeled.csv")).open(newline="", encoding="utf-8", errors="replace") as f:
        return [row[0].strip().strip("'").strip('"') for row in list(csv.reader(f))[1:]]


def _included(event: Path, ids: set[str]) -> int:
    """How many of ``ids`` the event's timestamp file marks Included = Y."""
    with next(event.glob("*-tweetids_entire_period.csv")).open(newline="") as f:
        return sum(1 for row in csv.reader(f, skipinitialspace=True)
                   if row and row[0] != "Timestamp" and row[1].strip("'") in ids and row[2].strip() == "Y")


# --- CrisisLex -------------------------------------------------------------------------------------


def test_colorado_floods_counts_labels_and_times() -> None:
    report = IngestReport()
    tweets = list(read_crisislex_t26(COLORADO, report=report))
    ids = _labelled_ids(COLORADO)
    assert len(ids) >= 100  # the fixture's 400 or the full 1000
    assert len(tweets) == len(ids) and report.read == len(ids) and report.kept == len(ids)
    assert [t.id for t in tweets] == ids
    assert not report.skipped and not report.dropped  # every labelled tweet is in the timestamp file
    assert all(t.event == "2013_Colorado_floods" and t.lang is None and t.user_hash is None for t in tweets)
    by_id = {t.id: t for t in tweets}
    t = by_id["378011169883037697"]
    assert t.text == "RT @dlfluegge: Crazy Flooding in Boulder, Colorado http://t.co/sg0iIdqCeY via @youtube"
    assert t.datetime == datetime(2013, 9, 12, 4, 24, 20, tzinfo=UTC)  # "Thu Sep 12 04:24:20 +0000 2013"
    assert t.properties == {"dataset": "CrisisLexT26", "information_source": "Media",
                            "information_type": "Sympathy and support",
                            "informativeness": "Related - but not informative",
                            "time_source": "crisislex", "included": True}
    assert by_id["376843697943769088"].hashtags == ["Longmont", "CO", "hiring", "tweetmyjobs"]
    times = sorted(t.datetime for t in tweets if t.datetime)
    # The event (event_description.json): September 2013, starting 2013-09-08, 21 days.
    assert datetime(2013, 9, 1, tzinfo=UTC) <= times[0] and times[-1] <= datetime(2013, 10, 31, tzinfo=UTC)
    included = sum(1 for t in tweets if t.properties["included"])
    assert included == _included(COLORADO, set(ids)) and 0 < included < len(ids)  # "Included(Y/N)" = Y; some N


def test_timestamps_are_joined_on_the_tweet_id() -> None:
    # Read the id/timestamp file independently and compare every joined time.
    expected: dict[str, datetime] = {}
    with next(COLORADO.glob("*-tweetids_entire_period.csv")).open(newline="") as f:
        for row in csv.reader(f, skipinitialspace=True):
            if row[0] != "Timestamp":
                expected[row[1]] = datetime.strptime(row[0], "%a %b %d %H:%M:%S %z %Y")
    tweets = list(read_crisislex_t26(COLORADO))
    assert all(t.datetime == expected[t.id] for t in tweets)
    # An independent clock: the creation time inside each snowflake id agrees to the second.
    gaps = sorted(abs((t.datetime - time_from_snowflake(t.id)).total_seconds()) for t in tweets  # type: ignore[operator]
                  if t.datetime)
    assert gaps[len(gaps) // 2] < 1.0 and gaps[-1] < 60


def test_event_without_timestamp_file_gets_time_from_ids() -> None:
    report = IngestReport()
    tweets = list(read_crisislex_t26(T26 / "2013_Boston_bombings", report=report))
    n = len(_labelled_ids(T26 / "2013_Boston_bombings"))
    assert n >= 100 and len(tweets) == n and report.dropped[TIME_FROM_ID] == n
    assert report.examples_for(TIME_FROM_ID)[0].line == 2
    # The bombing was on 2013-04-15 at 18:49 UTC; the collection runs for weeks after.
    times = sorted(t.datetime for t in tweets if t.datetime)
    assert len(times) == n and datetime(2013, 4, 15, 14, tzinfo=UTC) < times[0]
    assert times[-1] < datetime(2013, 7, 1, tzinfo=UTC)
    assert times[n // 2].date().isoformat() in ("2013-04-16", "2013-04-17")


def test_crisislex_t6_reader() -> None:
    report = IngestReport()
    folder = T6 / "2013_Queensland_Floods"
    tweets = list(read_crisislex_t6(folder, report=report))
    rows = sum(1 for _ in csv.reader(next(folder.glob("*.csv")).open(newline=""))) - 1
    assert report.read == rows and report.kept == len(tweets) == rows - report.skipped[DUPLICATE_ID]
    labels = {t.properties["label"] for t in tweets}
    assert labels == {"on-topic", "off-topic"}
    assert all(t.properties["on_topic"] == (t.properties["label"] == "on-topic") for t in tweets)
    last = next(t for t in tweets if t.id == "295764650597949441")  # the file's last row; quotes stripped
    assert last.text.startswith("Telstra flies in crew") and last.event == "2013_Queensland_Floods"
    # T6 has no timestamps: the ids give them (the floods were in January 2013).
    assert all(t.datetime and datetime(2012, 12, 1, tzinfo=UTC) < t.datetime < datetime(2013, 3, 1, tzinfo=UTC)
               for t in tweets)


def test_whole_t26_collection_and_event_info() -> None:
    events = crisislex_events(T26)
    folders = sorted(p for p in T26.iterdir() if p.is_dir())
    assert events == folders and len(events) >= 8  # every event folder (26 in the full collection)
    rows = sum(len(_labelled_ids(e)) for e in folders)
    report = IngestReport()
    n = sum(1 for _ in read_crisislex(T26, report=report))
    assert n == report.kept == rows and report.read == rows
    assert set(report.dropped) == {TIME_FROM_ID}  # only the Boston event lacks its timestamp file
    info = crisislex_event_info(COLORADO)
    assert info["country"] == "US" and info["location"] == "Colorado"
    assert crisislex_event_info(T6 / "2013_Alberta_Floods")["country"] is None


def test_not_a_crisislex_folder() -> None:
    with pytest.raises(InputDataError):
        list(read_crisislex_t26(T6 / "2013_Alberta_Floods"))


# --- Twitter API v1.1 and v2 -------------------------------------------------------------------------

V1_POINT: dict[str, Any] = {
    "created_at": "Thu Sep 12 15:02:11 +0000 2013", "id": 378181516138663936, "id_str": "378181516138663936",
    "full_text": "Water over the road at 28th &amp; Iris, #Boulder #boulderflood http://t.co/abc",
    "truncated": False, "lang": "en",
    "entities": {"hashtags": [{"text": "Boulder", "indices": [40, 48]}, {"text": "boulderflood", "indices": [49, 62]}],
                 "urls": [], "user_mentions": [],
                 "media": [{"id_str": "1", "type": "photo", "media_url_https": "https://pbs.twimg.com/media/a.jpg",
                            "expanded_url": "https://twitter.com/x/status/378181516138663936/photo/1"}]},
    "extended_entities": {"media": [
        {"id_str": "1", "type": "photo", "media_url_https": "https://pbs.twimg.com/media/a.jpg",
         "expanded_url": "https://twitter.com/x/status/378181516138663936/photo/1"},
        {"id_str": "2", "type": "photo", "media_url_https": "https://pbs.twimg.com/media/b.jpg",
         "expanded_url": "https://twitter.com/x/status/378181516138663936/photo/2"}]},
    "user": {"id": 1234567890, "id_str": "1234567890", "screen_name": "boulder_resident", "name": "A. Resident"},
    "geo": {"type": "Point", "coordinates": [40.0274, -105.2519]},
    "coordinates": {"type": "Point", "coordinates": [-105.2519, 40.0274]},
    "place": {"id": "fd70c22040963ac7", "place_type": "city", "full_name": "Boulder, CO", "country_code": "US",
              "bounding_box": {"type": "Polygon", "coordinates": [[
                  [-105.301758, 39.964069], [-105.301758, 40.094551], [-105.178883, 40.094551],
                  [-105.178883, 39.964069]]]}},
}

V1_PLACE_ONLY: dict[str, Any] = {
    "created_at": "Fri Jun 21 03:10:00 +0000 2013", "id_str": "347920000000000001",
    "text": "Evacuation centre at the Saddledome is full #yycflood", "lang": "und",
    "entities": {"hashtags": [{"text": "yycflood", "indices": [44, 53]}]},
    "user": {"id_str": "987654321"}, "coordinates": None, "geo": None,
    "place": {"id": "4b25aded08900fd8", "place_type": "city", "full_name": "Calgary, Alberta", "country_code": "CA",
              "bounding_box": {"type": "Polygon", "coordinates": [[[-114.3157, 50.8424], [-114.3157, 51.2124],
                                                                   [-113.8598, 51.2124], [-113.8598, 50.8424]]]}},
}

V1_EXTENDED_RETWEET: dict[str, Any] = {
    "created_at": "Sat Jun 22 10:00:00 +0000 2013", "id_str": "348389000000000002",
    "text": "RT @cityofcalgary: Do not drive through flooded underpasses. Stay away from riverbanks and…",
    "truncated": True, "user": {"id_str": "55"},
    "extended_tweet": {"full_text": "RT @cityofcalgary: Do not drive through flooded underpasses. Stay away from "
                                    "riverbanks and the Bow and Elbow rivers #yycflood #abflood",
                       "entities": {"hashtags": [{"text": "yycflood"}, {"text": "abflood"}]}},
    "retweeted_status": {"id_str": "348388000000000000"},
}

V2_PAGE: dict[str, Any] = {
    "data": [
        {"id": "1640000000000000001", "text": "Allerta meteo: acqua alta a Olbia #Sardegna", "lang": "it",
         "created_at": "2023-03-26T10:15:00.000Z", "author_id": "2244994945",
         "entities": {"hashtags": [{"start": 34, "end": 43, "tag": "Sardegna"}]},
         "geo": {"coordinates": {"type": "Point", "coordinates": [9.4980, 40.9234]}, "place_id": "olbia01"},
         "attachments": {"media_keys": ["3_1640000000000000001"]}},
        {"id": "1640000000000000002", "text": "Strade chiuse a Cagliari", "lang": "it",
         "created_at": "2023-03-26T11:00:00.000Z", "author_id": "783214",
         "geo": {"place_id": "cagliari01"},
         "note_tweet": {"text": "Strade chiuse a Cagliari e in provincia: evitate il centro #maltempo"}},
    ],
    "includes": {
        "users": [{"id": "2244994945", "username": "someone", "name": "Some One"},
                  {"id": "783214", "username": "other", "name": "Other"}],
        "media": [{"media_key": "3_1640000000000000001", "type": "photo",
                   "url": "https://pbs.twimg.com/media/olbia.jpg"}],
        "places": [{"id": "olbia01", "full_name": "Olbia, Sardegna", "country_code": "IT", "place_type": "city",
                    "geo": {"type": "Feature", "bbox": [9.43, 40.88, 9.56, 40.96], "properties": {}}},
                   {"id": "cagliari01", "full_name": "Cagliari, Sardegna", "country_code": "IT", "place_type": "city",
                    "geo": {"type": "Feature", "bbox": [9.05, 39.19, 9.18, 39.27], "properties": {}}}],
    },
    "meta": {"result_count": 2, "newest_id": "1640000000000000002", "oldest_id": "1640000000000000001"},
}


def _write_jsonl(path: Path, items: list[Any]) -> Path:
    path.write_text("\n".join(i if isinstance(i, str) else json.dumps(i) for i in items) + "\n", encoding="utf-8")
    return path


def test_v11_statuses(tmp_path: Path) -> None:
    report = IngestReport()
    path = _write_jsonl(tmp_path / "v11.jsonl", [V1_POINT, V1_PLACE_ONLY, V1_EXTENDED_RETWEET])
    a, b, c = list(read_twitter_json(path, ReaderConfig(salt=SALT), report))
    assert report.read == 3 and report.kept == 3 and not report.skipped
    assert a.id == "378181516138663936" and a.text.startswith("Water over the road at 28th & Iris")
    assert a.datetime == datetime(2013, 9, 12, 15, 2, 11, tzinfo=UTC) and a.lang == "en"
    assert (a.lon, a.lat, a.location_source, a.location_confidence) == (-105.2519, 40.0274, "geotag", 1.0)
    assert a.properties["geotag_kind"] == "point" and a.properties["place"]["full_name"] == "Boulder, CO"
    assert a.hashtags == ["Boulder", "boulderflood"]
    assert [m["url"] for m in a.media] == ["https://pbs.twimg.com/media/a.jpg", "https://pbs.twimg.com/media/b.jpg"]
    assert a.user_hash == hash_user_id("1234567890", SALT) and len(a.user_hash) == 64
    # The place's bounding box gives its centre, with less confidence than a point.
    assert b.lang is None  # "und"
    assert b.lon == pytest.approx((-114.3157 - 113.8598) / 2) and b.lat == pytest.approx((50.8424 + 51.2124) / 2)
    assert b.location_source == "geotag" and 0.3 < b.location_confidence < 0.9  # type: ignore[operator]
    assert b.properties["geotag_kind"] == "place"
    # Extended tweets: the full text and its entities, and the retweet link.
    assert c.text.endswith("the Bow and Elbow rivers #yycflood #abflood") and c.hashtags == ["yycflood", "abflood"]
    assert c.properties["retweet_of"] == "348388000000000000" and c.lon is None
    # Raw user ids and screen names are never kept.
    dumped = json.dumps([t.__dict__ for t in (a, b, c)], default=str)
    for secret in ("1234567890", "987654321", "boulder_resident", "A. Resident"):
        assert secret not in dumped


def test_v2_page(tmp_path: Path) -> None:
    report = IngestReport()
    path = tmp_path / "v2.json"
    path.write_text(json.dumps(V2_PAGE, indent=2), encoding="utf-8")  # one pretty-printed document
    olbia, cagliari = list(read_twitter_json(path, ReaderConfig(salt=SALT), report))
    assert report.read == 2 and report.kept == 2
    assert olbia.datetime == datetime(2023, 3, 26, 10, 15, tzinfo=UTC) and olbia.lang == "it"
    assert (olbia.lon, olbia.lat, olbia.location_confidence) == (9.4980, 40.9234, 1.0)
    assert olbia.hashtags == ["Sardegna"] and olbia.media == [
        {"type": "photo", "url": "https://pbs.twimg.com/media/olbia.jpg", "media_key": "3_1640000000000000001"}]
    assert olbia.user_hash == hash_user_id("2244994945", SALT)
    assert olbia.properties["place"]["full_name"] == "Olbia, Sardegna"
    # No point: the expanded place's bounding box; the long "note_tweet" text wins over the truncated one.
    assert cagliari.text.endswith("#maltempo") and cagliari.hashtags == ["maltempo"]
    assert cagliari.lon == pytest.approx(9.115) and cagliari.lat == pytest.approx(39.23)
    assert cagliari.properties["geotag_kind"] == "place" and cagliari.location_confidence < 1  # type: ignore[operator]
    # The same page as one JSON line, and already-decoded objects, give the same tweets.
    again = list(read_twitter_json(_write_jsonl(tmp_path / "v2.jsonl", [V2_PAGE]), ReaderConfig(salt=SALT)))
    assert [t.__dict__ for t in again] == [olbia.__dict__, cagliari.__dict__]
    assert [t.id for t in parse_twitter_objects([V2_PAGE])] == [olbia.id, cagliari.id]


def test_bad_json_records_are_skipped_with_reasons(tmp_path: Path) -> None:
    def status(i: int, **over: Any) -> dict[str, Any]:
        base = {"id_str": f"37800000000000{i:04d}", "text": f"flooding report {i}", "lang": "en",
                "created_at": "Thu Sep 12 15:02:11 +0000 2013", "user": {"id_str": str(i)}}
        base.update(over)
        return base

    lines: list[Any] = [
        status(1),                                                              # 1 good
        '{"id_str": "378000000000000002", "text": "broken',                     # 2 malformed JSON
        status(3, text=None, full_text=None),                                   # 3 missing text
        status(4, text="   "),                                                  # 4 blank text
        status(5, text="x" * 1_000_000),                                        # 5 1 MB of text
        status(6, lang=None),                                                   # 6 good, no language
        status(7, coordinates={"type": "Point", "coordinates": [200.0, 95.0]}),  # 7 out of range: kept, no location
        status(8, coordinates={"type": "Point", "coordinates": [40.0, -105.2]}),  # 8 lat/lon swapped: lat -105
        '{"id_str": "378000000000000009", "text": "nan", "coordinates": {"type": "Point", "coordinates": [NaN, 1]}}',
        status(10, coordinates={"type": "Point", "coordinates": [0, 0]}),        # 10 null island
        {"delete": {"status": {"id_str": "1"}}},                                # 11 stream notice
        status(1),                                                              # 12 duplicate of line 1
        status(13, id_str="not-a-number"),                                      # 13 bad id
        [1, 2, 3],                                                              # 14 not an object
        status(15, created_at="yesterday"),                                     # 15 bad time: kept, time from id
        "",                                                                     # 16 blank line: ignored
        status(17, lang="xx-notacode!"),                                        # 17 unknown language code
        status(18, text="z" * 200),                                             # 18 line too long (config below)
        status(19, place={"bounding_box": {"type": "Polygon", "coordinates": [[[10, 10], [10, "a"]]]}}),
    ]
    path = _write_jsonl(tmp_path / "bad.jsonl", lines)
    report = IngestReport()
    config = ReaderConfig(salt=SALT)
    kept = {t.id[-4:]: t for t in read_twitter_json(path, config, report)}
    assert set(kept) == {"0001", "0006", "0007", "0008", "0009", "0010", "0015", "0017", "0018", "0019"}
    assert report.skipped == {MALFORMED_JSON: 1, MISSING_TEXT: 2, TEXT_TOO_LONG: 1, NOT_A_TWEET: 2,
                              DUPLICATE_ID: 1, MISSING_ID: 1}
    assert report.read == 18 and report.kept == 10
    assert report.dropped[INVALID_COORDINATES] == 5 and report.dropped[INVALID_TIME] == 1
    def lines(reason: str) -> list[int | None]:
        return [e.line for e in report.examples_for(reason)]

    assert lines(MALFORMED_JSON) == [2] and lines(TEXT_TOO_LONG) == [5] and lines(DUPLICATE_ID) == [12]
    assert lines(MISSING_TEXT) == [3, 4] and lines(NOT_A_TWEET) == [11, 14] and lines(MISSING_ID) == [13]
    assert lines(INVALID_COORDINATES) == [7, 8, 9, 10, 19]
    assert "swapped" in report.examples_for(INVALID_COORDINATES)[1].detail
    for tid in ("0007", "0008", "0009", "0010", "0019"):
        assert kept[tid].lon is None and kept[tid].lat is None and kept[tid].location_source is None
    assert kept["0006"].lang is None and kept["0017"].lang is None and kept["0001"].lang == "en"
    assert kept["0015"].datetime == time_from_snowflake("378000000000000015")
    assert "read 18, kept 10" in report.summary()
    # A line longer than the configured cap is skipped before parsing (the 1 MB one, line 5).
    small = IngestReport()
    ids = [t.id for t in read_twitter_json(path, ReaderConfig(max_line_chars=100_000), small)]
    assert small.skipped[LINE_TOO_LONG] == 1 and TEXT_TOO_LONG not in small.skipped and len(ids) == 10
    assert small.examples_for(LINE_TOO_LONG)[0].line == 5


def test_hashtags_from_text_when_entities_are_absent() -> None:
    (t,) = parse_twitter_objects([{"id_str": "378000000000000100", "text": "Help #BoulderFlood victims, #1 &#39;x"}])
    assert t.hashtags == ["BoulderFlood"]
    assert extract_hashtags("#yyc #YYC #yycflood #2013 a#b") == ["yyc", "yycflood"]


# --- plain CSV ------------------------------------------------------------------------------------------


def test_csv_with_a_column_mapping(tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    rows = [
        ["post", "body", "when", "x", "y", "language", "author", "source"],
        ["a1", "Flooding in Olbia #Sardegna", "18/11/2013 21:05", "9.498", "40.923", "it", "u1", "web"],
        ["a2", "No coordinates here", "18/11/2013 22:00", "", "", "", "u2", "app"],
        ["a3", "Bad coordinates", "18/11/2013 22:10", "181", "40", "en", "u3", "app"],
        ["a4", "", "18/11/2013 22:20", "", "", "en", "u4", "app"],
        ["a5", "Bad time", "not a time", "nan", "nan", "en", "u5", "app"],
        ["a6", "too", "many", "fields", "", "", "", "", "", ""],
        ["a7", "y" * 200_000, "18/11/2013 23:00", "", "", "en", "u7", "app"],
        ["a8", "After the long row", "19/11/2013 08:00", "-105.27", "40.01", "en", "", "app"],
    ]
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    cols = CsvColumns(id="post", text="body", time="when", lon="x", lat="y", lang="language", user="author",
                      time_format="%d/%m/%Y %H:%M")
    report = IngestReport()
    tweets = {t.id: t for t in read_csv_tweets(path, cols, ReaderConfig(salt=SALT, event="test"), report)}
    assert set(tweets) == {"a1", "a2", "a3", "a5", "a8"}
    a1 = tweets["a1"]
    assert (a1.lon, a1.lat, a1.location_source, a1.lang) == (9.498, 40.923, "geotag", "it")
    assert a1.datetime == datetime(2013, 11, 18, 21, 5, tzinfo=UTC) and a1.hashtags == ["Sardegna"]
    assert a1.user_hash == hash_user_id("u1", SALT) and a1.properties == {"source_format": "csv", "source": "web",
                                                                         "geotag_kind": "point"}
    assert a1.event == "test"
    assert tweets["a2"].lon is None and tweets["a2"].lang is None
    assert tweets["a3"].lon is None and tweets["a5"].datetime is None and tweets["a5"].lon is None
    assert tweets["a8"].user_hash is None and tweets["a8"].lon == -105.27
    assert report.skipped == {MISSING_TEXT: 1, MALFORMED_ROW: 1, TEXT_TOO_LONG: 1}
    assert report.dropped == {INVALID_COORDINATES: 2, INVALID_TIME: 1}
    assert report.read == 8 and report.kept == 5
    with pytest.raises(InputDataError, match="missing column"):
        list(read_csv_tweets(path, CsvColumns(id="post", text="message")))



# --- field helpers ----------------------------------------------------------------------------------


def test_user_hash_is_salted_and_stable() -> None:
    h = hash_user_id("1234567890", "s1")
    assert h == hash_user_id(1234567890, "s1") and h != hash_user_id("1234567890", "s2")
    assert len(h) == 64 and "1234567890" not in h


def test_language_codes() -> None:
    assert normalize_lang("EN") == "en" and normalize_lang("pt_BR") == "pt-br"
    assert normalize_lang("und") is None and normalize_lang(None) is None and normalize_lang("qme") is None


def test_time_formats() -> None:
    expected = datetime(2013, 9, 12, 15, 2, 11, tzinfo=UTC)
    assert parse_time("Thu Sep 12 15:02:11 +0000 2013") == expected
    assert parse_time("2013-09-12T15:02:11.000Z") == expected
    assert parse_time("1378998131") == expected and parse_time(1378998131000) == expected
    assert parse_time("12/09/2013", "%d/%m/%Y") == datetime(2013, 9, 12, tzinfo=UTC)
    assert parse_time("soon") is None and parse_time(float("nan")) is None and parse_time("") is None
    assert time_from_snowflake("12") is None and time_from_snowflake("abc") is None


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text(max_size=8), st.none()),
       st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text(max_size=8), st.none()))
def test_coordinates_are_valid_or_rejected(lon: Any, lat: Any) -> None:
    out = check_lon_lat(lon, lat)
    if isinstance(out, tuple):
        x, y = out
        assert math.isfinite(x) and math.isfinite(y) and -180 <= x <= 180 and -90 <= y <= 90
    else:
        assert isinstance(out, str) and out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.text(max_size=60), st.builds(json.dumps, st.dictionaries(
    st.sampled_from(["id_str", "text", "lang", "coordinates", "created_at", "user", "data", "includes"]),
    st.one_of(st.none(), st.integers(), st.text(max_size=10), st.lists(st.integers(), max_size=3)),
    max_size=6))), max_size=12))
def test_arbitrary_lines_never_crash_the_json_reader(tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "fuzz.jsonl"
    path.write_text("\n".join(line.replace("\n", " ").replace("\r", " ") for line in lines), encoding="utf-8")
    report = IngestReport()
    tweets = list(read_twitter_json(path, report=report))
    assert report.kept == len(tweets) <= report.read
    assert report.read - report.kept == sum(report.skipped.values())
