"""Tweet readers: CrisisLex CSV, Twitter API v1.1 and v2 JSON, and plain CSV with a column mapping.

Every reader is a generator over :class:`Tweet` objects (the one post type: the catalogue stores them as
they are, ``catalog.tweets.upsert_tweets``) and never stops on a bad record: malformed lines, missing or oversized text,
impossible coordinates... are counted with a reason in an :class:`IngestReport` (with a few examples
and their line numbers), and the good records still come through. Nothing touches a database.

Privacy: user ids are replaced by an HMAC-SHA256 of the id keyed with a configurable salt; screen
names and display names are never read.

Example::

    report = IngestReport()
    tweets = list(read_crisislex(Path("CrisisLexT26/2013_Colorado_floods"), report=report))
    print(report.summary())  # read 1000, kept 1000
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import html
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eofusion.readers.errors import InputDataError

# Reasons a record is skipped (IngestReport.skipped) ...
MALFORMED_JSON = "malformed_json"
MALFORMED_ROW = "malformed_row"
NOT_A_TWEET = "not_a_tweet"
MISSING_ID = "missing_id"
MISSING_TEXT = "missing_text"
TEXT_TOO_LONG = "text_too_long"
LINE_TOO_LONG = "line_too_long"
DUPLICATE_ID = "duplicate_id"
# ... and reasons a field is dropped from a record that is kept (IngestReport.dropped).
INVALID_COORDINATES = "invalid_coordinates"
INVALID_TIME = "invalid_time"
TIME_FROM_ID = "time_from_id"

#: Twitter's epoch for snowflake ids (ms), and the first snowflake id (2010-11-04).
_SNOWFLAKE_EPOCH_MS = 1288834974657
_FIRST_SNOWFLAKE_ID = 29_700_859_247
_TWITTER_TIME = "%a %b %d %H:%M:%S %z %Y"
# Twitter's own codes for "no linguistic content" (media only, hashtags only...) are not languages.
_NO_LANGUAGE = frozenset({"", "und", "zxx", "qme", "qht", "qam", "qct", "qst", "art"})
_LANG_RE = re.compile(r"^[a-z]{2,3}(?:-[a-z0-9]{2,8})*$")
# A hashtag needs a letter: "#1" is a rank and "&#39;" an HTML entity, not hashtags.
_HASHTAG_RE = re.compile(r"(?<![\w&/])#(\w*[^\W\d_]\w*)")


@dataclass
class Tweet:
    """A post: what readers produce, the geoparser locates and the catalogue stores (one type for all three).

    Attributes:
        id: The platform's id (digits for Twitter).
        text: The text, HTML entities unescaped.
        datetime: Creation time (UTC, timezone-aware), None when unknown.
        lon: WGS84 longitude, None when the post has no location.
        lat: WGS84 latitude.
        lang: BCP 47 code as given by the source; None when absent or "und" (never guessed).
        hashtags: Hashtags without "#", as written, first occurrence kept.
        user_hash: HMAC-SHA256 (hex) of the author id keyed with the reader's salt.
        media: One dict per attached photo/video: ``type``, ``url`` and, when known, ``expanded_url``.
        event: The crisis or collection the post belongs to (CrisisLex folder name).
        location_source: ``geotag`` when the location comes from the post's own metadata.
        location_confidence: In [0, 1]; 1 for an exact point, lower for a place's bounding box.
        properties: Source-specific fields (labels, place name, retweet id...).
    """

    id: str
    text: str
    datetime: datetime | None
    lon: float | None = None
    lat: float | None = None
    lang: str | None = None
    hashtags: list[str] = field(default_factory=list)
    user_hash: str | None = None
    media: list[dict[str, Any]] = field(default_factory=list)
    event: str | None = None
    location_source: str | None = None
    location_confidence: float | None = None
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReaderConfig:
    """Options shared by all readers.

    Attributes:
        salt: Key of the HMAC that replaces user ids. Set a secret, per-deployment value: with an
            empty salt the hash of a (guessable) numeric id can be recomputed by anyone.
        max_text_chars: Longer texts are skipped (``text_too_long``): no tweet is that long, so
            it is a corrupt or hostile record, and it would slow every later stage.
        max_line_chars: JSON lines longer than this are skipped unparsed (``line_too_long``).
        max_examples: Examples kept per reason in the report.
        dedupe: Skip a second record with an id already seen by this reader call.
        event: Event name given to every tweet (readers that know the event set it themselves).
    """

    salt: str = ""
    max_text_chars: int = 10_000
    max_line_chars: int = 5_000_000
    max_examples: int = 5
    dedupe: bool = True
    event: str | None = None


@dataclass(frozen=True)
class ReportExample:
    """One problem seen while reading: where and why."""

    reason: str
    source: str
    line: int | None
    detail: str


@dataclass
class IngestReport:
    """What a reader did: records read, kept, skipped by reason, fields dropped by reason.

    Attributes:
        read: Records met (lines of JSON, CSV rows, tweets inside a v2 page).
        kept: Records yielded.
        skipped: Records not yielded, by reason.
        dropped: Fields removed from records that were kept (e.g. impossible coordinates), by reason.
        examples: Up to ``max_examples`` per reason, with source file and line number.
    """

    read: int = 0
    kept: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    examples: list[ReportExample] = field(default_factory=list)
    max_examples: int = 5

    def skip(self, reason: str, source: str, line: int | None, detail: str = "") -> None:
        """Count a skipped record."""
        self.skipped[reason] += 1
        self._example(reason, source, line, detail)

    def drop(self, reason: str, source: str, line: int | None, detail: str = "") -> None:
        """Count a field removed from a kept record."""
        self.dropped[reason] += 1
        self._example(reason, source, line, detail)

    def _example(self, reason: str, source: str, line: int | None, detail: str) -> None:
        if sum(1 for e in self.examples if e.reason == reason) < self.max_examples:
            self.examples.append(ReportExample(reason, source, line, detail[:200]))

    def examples_for(self, reason: str) -> list[ReportExample]:
        """The examples kept for one reason."""
        return [e for e in self.examples if e.reason == reason]

    def merge(self, other: IngestReport) -> None:
        """Add another report's counts and examples into this one."""
        self.read += other.read
        self.kept += other.kept
        self.skipped.update(other.skipped)
        self.dropped.update(other.dropped)
        for e in other.examples:
            self._example(e.reason, e.source, e.line, e.detail)

    def summary(self) -> str:
        """One line: read/kept and the non-zero reasons."""
        parts = [f"read {self.read}", f"kept {self.kept}"]
        parts += [f"skipped {r}: {n}" for r, n in sorted(self.skipped.items())]
        parts += [f"dropped {r}: {n}" for r, n in sorted(self.dropped.items())]
        return ", ".join(parts)


# --- field helpers -------------------------------------------------------------------------------


def hash_user_id(user_id: str | int, salt: str) -> str:
    """HMAC-SHA256 (hex) of a user id keyed with ``salt``: stable within a deployment, not reversible."""
    return hmac.new(salt.encode("utf-8"), str(user_id).encode("utf-8"), hashlib.sha256).hexdigest()


def time_from_snowflake(tweet_id: str | int) -> datetime | None:
    """Creation time encoded in a Twitter snowflake id (posts since 2010-11-04), else None."""
    try:
        n = int(tweet_id)
    except (TypeError, ValueError):
        return None
    if n < _FIRST_SNOWFLAKE_ID or n >= 1 << 63:
        return None
    return datetime.fromtimestamp(((n >> 22) + _SNOWFLAKE_EPOCH_MS) / 1000, tz=UTC)


def parse_time(value: Any, fmt: str | None = None) -> datetime | None:
    """A timezone-aware UTC datetime from Twitter's, ISO 8601 or epoch (s or ms) notation.

    Args:
        value: The raw value (string or number).
        fmt: An explicit ``strptime`` format; naive results are taken as UTC.

    Returns:
        The datetime, or None when the value is empty or unreadable.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                return None
            secs = value / 1000 if value > 1e11 else value  # ms since epoch after 1973
            return datetime.fromtimestamp(secs, tz=UTC)
        s = str(value).strip()
        if fmt:
            dt = datetime.strptime(s, fmt)
        elif re.fullmatch(r"\d{9,13}(\.\d+)?", s):
            return parse_time(float(s))
        elif s[:3].isalpha():
            dt = datetime.strptime(s, _TWITTER_TIME)
        else:
            dt = datetime.fromisoformat(s)
    except (ValueError, OverflowError, OSError):
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def normalize_lang(value: Any) -> str | None:
    """The source's language code, lower-cased; None for absent, "und" or Twitter's non-language codes."""
    if not isinstance(value, str):
        return None
    code = value.strip().lower().replace("_", "-")
    if code in _NO_LANGUAGE or not _LANG_RE.match(code):
        return None
    return code


def extract_hashtags(text: str) -> list[str]:
    """Hashtags written in the text (without "#"), first occurrence of each, case-insensitively."""
    return _dedupe_tags(m.group(1) for m in _HASHTAG_RE.finditer(text))


def _dedupe_tags(tags: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for t in tags:
        if t and t.casefold() not in seen:
            seen.add(t.casefold())
            out.append(t)
    return out


def check_lon_lat(lon: Any, lat: Any) -> tuple[float, float] | str:
    """``(lon, lat)`` as floats when usable, else the reason they are not.

    Out-of-range values are rejected, not swapped: a pair that only fits when swapped may as well be
    garbage, and a wrong point is worse than none. (0, 0) is rejected as the usual null default.
    """
    try:
        x, y = float(lon), float(lat)
    except (TypeError, ValueError):
        return f"not numbers: {lon!r}, {lat!r}"
    if not (math.isfinite(x) and math.isfinite(y)):
        return f"not finite: {x}, {y}"
    if not (-180 <= x <= 180 and -90 <= y <= 90):
        hint = " (swapped?)" if -90 <= x <= 90 and -180 <= y <= 180 else ""
        return f"out of range: lon {x}, lat {y}{hint}"
    if x == 0 and y == 0:
        return "null island (0, 0)"
    return x, y


def bbox_confidence(west: float, south: float, east: float, north: float) -> float:
    """Confidence of a bounding box's centre as the post's location: ~0.9 for a block, ~0.2 for a country."""
    dx = (east - west) * math.cos(math.radians((south + north) / 2)) * 111.0
    dy = (north - south) * 111.0
    diag_km = max(math.hypot(dx, dy), 0.01)
    return round(min(0.9, max(0.1, 0.9 - 0.2 * math.log10(max(diag_km, 1.0)))), 3)


def _clean_text(raw: Any) -> str | None:
    if not isinstance(raw, str):
        return None
    text = html.unescape(raw).strip()  # Twitter escapes &, < and > in text
    return text or None


# --- common record assembly ----------------------------------------------------------------------


class _Emitter:
    """Checks shared by every reader (id, text, duplicates) and the report bookkeeping."""

    def __init__(self, config: ReaderConfig, report: IngestReport) -> None:
        self.config = config
        self.report = report
        report.max_examples = config.max_examples
        self.seen: set[str] = set()

    def check(self, tweet_id: Any, text: Any, source: str, line: int | None,
              digits: bool = True) -> tuple[str, str] | None:
        """The id and cleaned text, or None after reporting why the record is skipped."""
        tid = str(tweet_id).strip().strip("'\"").strip() if tweet_id is not None else ""
        if not tid or (digits and not tid.isdigit()):
            self.report.skip(MISSING_ID, source, line, f"id {tweet_id!r}")
            return None
        if isinstance(text, str) and len(text) > self.config.max_text_chars:
            self.report.skip(TEXT_TOO_LONG, source, line, f"id {tid}: {len(text)} characters")
            return None
        clean = _clean_text(text)
        if clean is None:
            self.report.skip(MISSING_TEXT, source, line, f"id {tid}")
            return None
        if self.config.dedupe:
            if tid in self.seen:
                self.report.skip(DUPLICATE_ID, source, line, f"id {tid}")
                return None
            self.seen.add(tid)
        return tid, clean

    def location(self, lon: Any, lat: Any, source: str, line: int | None, tid: str) -> tuple[float, float] | None:
        """Checked coordinates, or None after reporting the dropped location."""
        checked = check_lon_lat(lon, lat)
        if isinstance(checked, str):
            self.report.drop(INVALID_COORDINATES, source, line, f"id {tid}: {checked}")
            return None
        return checked

    def time(self, value: Any, tid: str, source: str, line: int | None, fmt: str | None = None) -> datetime | None:
        """Parsed time, or None after reporting an unreadable value."""
        dt = parse_time(value, fmt)
        if dt is None and value not in (None, ""):
            self.report.drop(INVALID_TIME, source, line, f"id {tid}: {str(value)[:60]!r}")
        return dt

    def time_from_id(self, tid: str, source: str, line: int | None) -> datetime | None:
        """The snowflake time of a Twitter id, counted as ``time_from_id`` when there is one."""
        dt = time_from_snowflake(tid)
        if dt is not None:
            self.report.drop(TIME_FROM_ID, source, line, f"id {tid}")
        return dt


# --- CrisisLex -----------------------------------------------------------------------------------


def crisislex_events(root: Path) -> list[Path]:
    """Event folders under ``root`` (itself an event folder, CrisisLexT26/T6, or their parent), sorted."""
    root = Path(root)
    if _is_crisislex_event(root):
        return [root]
    found = [p for p in sorted(root.rglob("*")) if p.is_dir() and _is_crisislex_event(p)]
    return found


def _is_crisislex_event(folder: Path) -> bool:
    return any(folder.glob("*-tweets_labeled.csv")) or any(folder.glob("*-ontopic_offtopic.csv"))


def crisislex_event_info(event_dir: Path) -> dict[str, Any]:
    """Name, country (ISO code) and place of a CrisisLexT26 event from its ``*-event_description.json``.

    Returns:
        ``{"event", "name", "country", "location"}``; values are None when the file is absent (T6).
    """
    event_dir = Path(event_dir)
    info: dict[str, Any] = {"event": event_dir.name, "name": None, "country": None, "location": None}
    for path in event_dir.glob("*-event_description.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        loc = data.get("location") or {}
        info.update(name=data.get("name"), country=loc.get("country"), location=loc.get("location_description"))
    return info


def read_crisislex(root: Path, config: ReaderConfig = ReaderConfig(),
                   report: IngestReport | None = None) -> Iterator[Tweet]:
    """All tweets of the CrisisLexT26 and CrisisLexT6 events found under ``root``.

    Args:
        root: An event folder, a CrisisLexT26/T6 folder, or the folder holding them.
        config: Reader options.
        report: Filled with counts and examples (a fresh one is used when None).

    Yields:
        Tweets with ``event`` = the folder name and the crowd labels in ``properties``.
    """
    report = report if report is not None else IngestReport()
    for event_dir in crisislex_events(root):
        if any(event_dir.glob("*-tweets_labeled.csv")):
            yield from read_crisislex_t26(event_dir, config, report)
        else:
            yield from read_crisislex_t6(event_dir, config, report)


def _load_crisislex_times(path: Path, report: IngestReport) -> dict[str, tuple[datetime, bool]]:
    """Tweet id -> (time, included in the analysed period) from a ``*-tweetids_entire_period.csv``."""
    times: dict[str, tuple[datetime, bool]] = {}
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f, skipinitialspace=True)
        for row in _csv_rows(reader, path, report):
            if len(row) < 2 or row[0].strip() == "Timestamp":
                continue
            tid = row[1].strip().strip("'\"")
            dt = parse_time(row[0], _TWITTER_TIME)
            if dt is None:
                report.drop(INVALID_TIME, path.name, reader.line_num, f"{row[0]!r}")
                continue
            times[tid] = (dt, len(row) > 2 and row[2].strip().upper() == "Y")
    return times


def _csv_rows(reader: Any, path: Path, report: IngestReport) -> Iterator[list[str]]:
    """Rows of a csv reader; a row the csv module cannot parse is reported and passed over."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            # The csv module recovers at the next line; the record itself is lost.
            reason = TEXT_TOO_LONG if "field larger than field limit" in str(e) else MALFORMED_ROW
            report.read += 1
            report.skip(reason, path.name, reader.line_num, str(e))
            continue
        yield row


def read_crisislex_t26(event_dir: Path, config: ReaderConfig = ReaderConfig(),
                       report: IngestReport | None = None) -> Iterator[Tweet]:
    """Labelled tweets of one CrisisLexT26 event, timed by the event's id/timestamp file.

    ``*-tweets_labeled.csv`` ("Tweet ID, Tweet Text, Information Source, Information Type,
    Informativeness") is joined on the id with ``*-tweetids_entire_period.csv`` ("Timestamp,
    Tweet-ID, Included(Y/N)"). A tweet missing from the latter (or an event without it) gets the
    time encoded in its snowflake id, counted as ``time_from_id``.

    Args:
        event_dir: The event folder; its name becomes ``Tweet.event``.
        config: Reader options.
        report: Filled with counts and examples.

    Yields:
        One tweet per labelled row, labels in ``properties``.
    """
    report = report if report is not None else IngestReport()
    event_dir = Path(event_dir)
    labelled = next(event_dir.glob("*-tweets_labeled.csv"), None)
    if labelled is None:
        raise InputDataError(event_dir, "no *-tweets_labeled.csv: not a CrisisLexT26 event folder")
    times_file = next(event_dir.glob("*-tweetids_entire_period.csv"), None)
    times = _load_crisislex_times(times_file, report) if times_file else {}
    for row, line, tid, text in _crisislex_rows(labelled, 5, _Emitter(config, report), report):
        props: dict[str, Any] = {
            "dataset": "CrisisLexT26", "information_source": row[2].strip(),
            "information_type": row[3].strip(), "informativeness": row[4].strip(),
        }
        dt: datetime | None
        if tid in times:
            dt, included = times[tid]
            props.update(time_source="crisislex", included=included)
        else:
            dt = time_from_snowflake(tid)
            props["time_source"] = "tweet_id"
            report.drop(TIME_FROM_ID, labelled.name, line, f"id {tid} not in the timestamp file")
        report.kept += 1
        yield Tweet(id=tid, text=text, datetime=dt, hashtags=extract_hashtags(text),
                    event=config.event or event_dir.name, properties=props)


def _crisislex_rows(path: Path, n_fields: int, emit: _Emitter, report: IngestReport
                    ) -> Iterator[tuple[list[str], int, str, str]]:
    """The data rows of a CrisisLex CSV: ``(row, line, id, text)`` of rows with ``n_fields`` fields and a usable
    id and text; the others are counted in ``report`` with their reason."""
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f, skipinitialspace=True)
        for row in _csv_rows(reader, path, report):
            if reader.line_num == 1 and row and row[0].strip().lower() == "tweet id":
                continue
            report.read += 1
            if len(row) != n_fields:
                report.skip(MALFORMED_ROW, path.name, reader.line_num, f"{len(row)} fields, expected {n_fields}")
                continue
            checked = emit.check(row[0], row[1], path.name, reader.line_num)
            if checked is not None:
                yield row, reader.line_num, checked[0], checked[1]


def read_crisislex_t6(event_dir: Path, config: ReaderConfig = ReaderConfig(),
                      report: IngestReport | None = None) -> Iterator[Tweet]:
    """On-/off-topic labelled tweets of one CrisisLexT6 event (``tweet id, tweet, label``).

    T6 has no timestamps: the time is the one encoded in the snowflake id (``time_source`` =
    ``tweet_id``), exact to the millisecond for tweets since November 2010.

    Args:
        event_dir: The event folder; its name becomes ``Tweet.event``.
        config: Reader options.
        report: Filled with counts and examples.

    Yields:
        One tweet per row; ``properties["label"]`` is "on-topic" or "off-topic".
    """
    report = report if report is not None else IngestReport()
    event_dir = Path(event_dir)
    path = next(event_dir.glob("*-ontopic_offtopic.csv"), None)
    if path is None:
        raise InputDataError(event_dir, "no *-ontopic_offtopic.csv: not a CrisisLexT6 event folder")
    for row, _, tid, text in _crisislex_rows(path, 3, _Emitter(config, report), report):
        label = row[2].strip()
        report.kept += 1
        yield Tweet(id=tid, text=text, datetime=time_from_snowflake(tid), hashtags=extract_hashtags(text),
                    event=config.event or event_dir.name,
                    properties={"dataset": "CrisisLexT6", "label": label, "on_topic": label == "on-topic",
                                "time_source": "tweet_id"})


# --- Twitter API JSON ----------------------------------------------------------------------------


def read_twitter_json(path: Path, config: ReaderConfig = ReaderConfig(),
                      report: IngestReport | None = None) -> Iterator[Tweet]:
    """Tweets from a Twitter API v1.1 or v2 dump: JSON lines, one JSON document, or a JSON array.

    Each line (or document) may be a v1.1 status, a v1.1 search response (``statuses``), a v2
    response page (``data`` + ``includes``) or a stream notice (``delete``, ``limit``..., skipped as
    ``not_a_tweet``). JSON lines are streamed; a single multi-line document is read whole.

    Args:
        path: The file.
        config: Reader options.
        report: Filled with counts and examples.

    Yields:
        Tweets; a v1.1 point or a v2 ``geo.coordinates`` gives ``location_source="geotag"`` and
        confidence 1; a place's bounding box gives its centre with a lower confidence.
    """
    report = report if report is not None else IngestReport()
    path = Path(path)
    emit = _Emitter(config, report)
    with path.open(encoding="utf-8", errors="replace") as f:
        head = f.read(1 << 16)
        f.seek(0)
        stripped = head.lstrip()
        first_line = stripped.split("\n", 1)[0]
        whole_document = stripped.startswith("[") or (stripped.startswith("{") and not _parses(first_line))
        if whole_document:
            try:
                doc = json.load(f)
            except ValueError as e:
                report.read += 1
                report.skip(MALFORMED_JSON, path.name, getattr(e, "lineno", None), str(e))
                return
            items = doc if isinstance(doc, list) else [doc]
            for obj in items:
                yield from _tweets_from_object(obj, emit, path.name, None)
            return
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            if len(line) > config.max_line_chars:
                report.read += 1
                report.skip(LINE_TOO_LONG, path.name, lineno, f"{len(line)} characters")
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                report.read += 1
                report.skip(MALFORMED_JSON, path.name, lineno, str(e))
                continue
            yield from _tweets_from_object(obj, emit, path.name, lineno)


def parse_twitter_objects(objects: Iterable[Any], config: ReaderConfig = ReaderConfig(),
                          report: IngestReport | None = None, source: str = "<objects>") -> Iterator[Tweet]:
    """Tweets from already-decoded API objects (v1.1 statuses, v2 pages...), e.g. from a live client."""
    report = report if report is not None else IngestReport()
    emit = _Emitter(config, report)
    for i, obj in enumerate(objects, start=1):
        yield from _tweets_from_object(obj, emit, source, i)


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _tweets_from_object(obj: Any, emit: _Emitter, source: str, line: int | None) -> Iterator[Tweet]:
    report = emit.report
    if isinstance(obj, dict) and "data" in obj and ("includes" in obj or "meta" in obj or _looks_v2(obj["data"])):
        yield from _v2_page(obj, emit, source, line)
    elif isinstance(obj, dict) and isinstance(obj.get("statuses"), list):
        for status in obj["statuses"]:
            yield from _tweets_from_object(status, emit, source, line)
    elif isinstance(obj, dict) and ("id_str" in obj or ("id" in obj and _has_any(obj, _V1_KEYS))):
        report.read += 1
        tweet = _v1_status(obj, emit, source, line)
        if tweet is not None:
            report.kept += 1
            yield tweet
    else:
        report.read += 1
        kind = ", ".join(sorted(obj)[:4]) if isinstance(obj, dict) else type(obj).__name__
        report.skip(NOT_A_TWEET, source, line, f"keys: {kind}")


_V1_KEYS = ("text", "full_text", "extended_tweet", "user", "created_at")


def _looks_v2(data: Any) -> bool:
    sample = data[0] if isinstance(data, list) and data else data
    return isinstance(sample, dict) and "id" in sample and "id_str" not in sample


def _dict(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one (API fields may be null or malformed)."""
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    """``value`` when it is a JSON array, else an empty one."""
    return value if isinstance(value, list) else []


def _has_any(obj: Mapping[str, Any], keys: Iterable[str]) -> bool:
    return any(k in obj for k in keys)


def _media_v1(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    # extended_entities lists every photo of a post; entities only the first.
    ext = _list(_dict(obj.get("extended_entities")).get("media")) or _list(_dict(obj.get("entities")).get("media"))
    out = []
    for m in ext:
        if not isinstance(m, dict):
            continue
        url = m.get("media_url_https") or m.get("media_url")
        if url:
            item = {"type": m.get("type", "photo"), "url": url}
            if m.get("expanded_url"):
                item["expanded_url"] = m["expanded_url"]
            out.append(item)
    return out


def _v1_status(obj: Mapping[str, Any], emit: _Emitter, source: str, line: int | None) -> Tweet | None:
    ext = _dict(obj.get("extended_tweet"))
    text = obj.get("full_text") or ext.get("full_text") or obj.get("text")
    checked = emit.check(obj.get("id_str") or obj.get("id"), text, source, line)
    if checked is None:
        return None
    tid, clean = checked
    user = _dict(obj.get("user"))
    uid = user.get("id_str") or user.get("id")
    entities = _dict(ext.get("entities")) or _dict(obj.get("entities"))
    tags = entities.get("hashtags")
    hashtags = (_dedupe_tags(str(h.get("text", "")) for h in tags if isinstance(h, dict))
                if isinstance(tags, list) else extract_hashtags(clean))
    created = obj.get("created_at")
    dt = emit.time(created, tid, source, line) if created is not None else None
    if dt is None and obj.get("timestamp_ms"):
        dt = parse_time(obj.get("timestamp_ms"))
    if dt is None:
        dt = emit.time_from_id(tid, source, line)
    props: dict[str, Any] = {"source_format": "twitter_v1.1"}
    rt = obj.get("retweeted_status")
    if isinstance(rt, dict) and (rt.get("id_str") or rt.get("id")):
        props["retweet_of"] = str(rt.get("id_str") or rt.get("id"))
    tweet = Tweet(id=tid, text=clean, datetime=dt, lang=normalize_lang(obj.get("lang")), hashtags=hashtags,
                  user_hash=hash_user_id(uid, emit.config.salt) if uid else None,
                  media=_media_v1(ext) or _media_v1(obj), event=emit.config.event, properties=props)
    coords = obj.get("coordinates")
    geo = obj.get("geo")
    if isinstance(coords, dict) and isinstance(coords.get("coordinates"), list | tuple):
        _set_point(tweet, coords["coordinates"], emit, source, line)
    elif isinstance(geo, dict) and isinstance(geo.get("coordinates"), list | tuple) and len(geo["coordinates"]) == 2:
        # The deprecated "geo" field is [lat, lon], unlike GeoJSON.
        lat, lon = geo["coordinates"]
        _set_point(tweet, [lon, lat], emit, source, line)
    place = obj.get("place")
    if isinstance(place, dict):
        raw = place.get("bounding_box")
        bbox = _bbox_v1(raw)
        if raw and bbox is None and tweet.location_source is None:
            emit.report.drop(INVALID_COORDINATES, source, line, f"id {tweet.id}: unreadable place bounding box")
        _add_place(tweet, place, bbox, emit, source, line)
    return tweet


def _set_point(tweet: Tweet, lon_lat: Any, emit: _Emitter, source: str, line: int | None) -> None:
    if not isinstance(lon_lat, list | tuple) or len(lon_lat) != 2:
        emit.report.drop(INVALID_COORDINATES, source, line, f"id {tweet.id}: {lon_lat!r}")
        return
    checked = emit.location(lon_lat[0], lon_lat[1], source, line, tweet.id)
    if checked:
        tweet.lon, tweet.lat = checked
        tweet.location_source = "geotag"
        tweet.location_confidence = 1.0
        tweet.properties["geotag_kind"] = "point"


def _bbox_v1(bbox: Any) -> tuple[float, float, float, float] | None:
    """(west, south, east, north) of a v1.1 place bounding box (a GeoJSON polygon ring)."""
    try:
        ring = bbox["coordinates"][0]
        xs = [float(p[0]) for p in ring]
        ys = [float(p[1]) for p in ring]
    except (TypeError, KeyError, IndexError, ValueError):
        return None
    return (min(xs), min(ys), max(xs), max(ys)) if xs else None


def _add_place(tweet: Tweet, place: Mapping[str, Any], bbox: tuple[float, float, float, float] | None,
               emit: _Emitter, source: str, line: int | None) -> None:
    """Record the place and, when the post has no point, use its bounding box's centre."""
    tweet.properties["place"] = {k: place.get(k) for k in ("id", "full_name", "place_type", "country_code")
                                 if place.get(k) is not None}
    if tweet.location_source == "geotag" or bbox is None:
        return
    west, south, east, north = bbox
    if not all(math.isfinite(v) for v in bbox) or west > east or south > north:
        emit.report.drop(INVALID_COORDINATES, source, line, f"id {tweet.id}: place bbox {bbox}")
        return
    checked = emit.location((west + east) / 2, (south + north) / 2, source, line, tweet.id)
    if checked:
        tweet.lon, tweet.lat = checked
        tweet.location_source = "geotag"
        tweet.location_confidence = bbox_confidence(west, south, east, north)
        tweet.properties["geotag_kind"] = "place"


def _v2_page(page: Mapping[str, Any], emit: _Emitter, source: str, line: int | None) -> Iterator[Tweet]:
    includes = _dict(page.get("includes"))
    users = {str(u.get("id")): u for u in _list(includes.get("users")) if isinstance(u, dict)}
    media = {str(m.get("media_key")): m for m in _list(includes.get("media")) if isinstance(m, dict)}
    places = {str(p.get("id")): p for p in _list(includes.get("places")) if isinstance(p, dict)}
    data = page.get("data")
    for obj in data if isinstance(data, list) else [data]:
        emit.report.read += 1
        if not isinstance(obj, dict):
            emit.report.skip(NOT_A_TWEET, source, line, f"data item of type {type(obj).__name__}")
            continue
        tweet = _v2_tweet(obj, users, media, places, emit, source, line)
        if tweet is not None:
            emit.report.kept += 1
            yield tweet


def _v2_tweet(obj: Mapping[str, Any], users: Mapping[str, Any], media: Mapping[str, Any],
              places: Mapping[str, Any], emit: _Emitter, source: str, line: int | None) -> Tweet | None:
    note = _dict(obj.get("note_tweet"))
    checked = emit.check(obj.get("id"), note.get("text") or obj.get("text"), source, line)
    if checked is None:
        return None
    tid, clean = checked
    entities = _dict(obj.get("entities"))
    tags = entities.get("hashtags")
    hashtags = (_dedupe_tags(str(h.get("tag", "")) for h in tags if isinstance(h, dict))
                if isinstance(tags, list) else extract_hashtags(clean))
    # author_id is there whether or not the page expanded the user object; includes.users may also
    # hold mentioned users, so it is never used to guess the author.
    uid = obj.get("author_id")
    keys = _list(_dict(obj.get("attachments")).get("media_keys"))
    items = []
    for k in keys:
        m = media.get(str(k))
        if m and (m.get("url") or m.get("preview_image_url")):
            items.append({"type": m.get("type", "photo"), "url": m.get("url") or m.get("preview_image_url"),
                          "media_key": str(k)})
    props: dict[str, Any] = {"source_format": "twitter_v2"}
    for ref in _list(obj.get("referenced_tweets")):
        if isinstance(ref, dict) and ref.get("type") == "retweeted":
            props["retweet_of"] = str(ref.get("id"))
    created = obj.get("created_at")
    dt = emit.time(created, tid, source, line) if created else None
    tweet = Tweet(id=tid, text=clean, datetime=dt or emit.time_from_id(tid, source, line),
                  lang=normalize_lang(obj.get("lang")), hashtags=hashtags,
                  user_hash=hash_user_id(uid, emit.config.salt) if uid else None, media=items,
                  event=emit.config.event, properties=props)
    geo = _dict(obj.get("geo"))
    point = geo.get("coordinates")
    if isinstance(point, dict) and point.get("coordinates") is not None:
        _set_point(tweet, point.get("coordinates"), emit, source, line)
    place_id = geo.get("place_id")
    if place_id is not None:
        place = places.get(str(place_id))
        if place is None:
            tweet.properties["place"] = {"id": str(place_id)}
        else:
            bbox = _dict(place.get("geo")).get("bbox")
            box = None
            if isinstance(bbox, list | tuple) and len(bbox) == 4:
                try:
                    box = (float(bbox[0]), float(bbox[1]), float(bbox[2]), float(bbox[3]))
                except (TypeError, ValueError):
                    box = None
            _add_place(tweet, place, box, emit, source, line)
    return tweet


# --- plain CSV -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CsvColumns:
    """Which CSV columns hold which tweet field (None: the file has no such column).

    Attributes:
        id: Column of the post id (any non-empty string).
        text: Column of the text.
        time: Column of the creation time.
        lon: Column of the WGS84 longitude.
        lat: Column of the WGS84 latitude.
        lang: Column of the language code.
        user: Column of the author id (hashed, never stored raw).
        time_format: ``strptime`` format of ``time``; None reads Twitter's format, ISO 8601 or epoch.
        delimiter: Field separator.
        encoding: File encoding; undecodable bytes are replaced, not fatal.
        keep_other_columns: Put the remaining columns in ``properties``.
    """

    id: str = "id"
    text: str = "text"
    time: str | None = "time"
    lon: str | None = None
    lat: str | None = None
    lang: str | None = None
    user: str | None = None
    time_format: str | None = None
    delimiter: str = ","
    encoding: str = "utf-8"
    keep_other_columns: bool = True


def read_csv_tweets(path: Path, columns: CsvColumns = CsvColumns(), config: ReaderConfig = ReaderConfig(),
                    report: IngestReport | None = None) -> Iterator[Tweet]:
    """Tweets from a CSV file with a header, mapped by ``columns``.

    Args:
        path: The file.
        columns: The column mapping.
        config: Reader options.
        report: Filled with counts and examples.

    Yields:
        Tweets; a lon/lat pair gives ``location_source="geotag"``.

    Raises:
        InputDataError: The header lacks a mapped column (a configuration error, not a bad record).
    """
    report = report if report is not None else IngestReport()
    path = Path(path)
    emit = _Emitter(config, report)
    with path.open(newline="", encoding=columns.encoding, errors="replace") as f:
        reader = csv.reader(f, delimiter=columns.delimiter, skipinitialspace=True)
        header = next(reader, None)
        if header is None:
            return
        header = [h.strip().lstrip("\ufeff") for h in header]
        wanted = {"id": columns.id, "text": columns.text, "time": columns.time, "lon": columns.lon,
                  "lat": columns.lat, "lang": columns.lang, "user": columns.user}
        missing = [c for c in wanted.values() if c is not None and c not in header]
        if missing:
            raise InputDataError(path, f"missing column(s) {missing}; header is {header}")
        pos = {k: header.index(c) for k, c in wanted.items() if c is not None}
        mapped = set(pos.values())
        for row in _csv_rows(reader, path, report):
            if not row or not any(cell.strip() for cell in row):
                continue
            report.read += 1
            if len(row) != len(header):
                report.skip(MALFORMED_ROW, path.name, reader.line_num, f"{len(row)} fields, header has {len(header)}")
                continue
            checked = emit.check(row[pos["id"]], row[pos["text"]], path.name, reader.line_num, digits=False)
            if checked is None:
                continue
            tid, text = checked
            props: dict[str, Any] = {"source_format": "csv"}
            if columns.keep_other_columns:
                props.update({header[i]: v for i, v in enumerate(row) if i not in mapped})
            uid = row[pos["user"]].strip() if "user" in pos else ""
            tweet = Tweet(id=tid, text=text,
                          datetime=emit.time(row[pos["time"]], tid, path.name, reader.line_num,
                                             columns.time_format) if "time" in pos else None,
                          lang=normalize_lang(row[pos["lang"]]) if "lang" in pos else None,
                          hashtags=extract_hashtags(text),
                          user_hash=hash_user_id(uid, config.salt) if uid else None,
                          event=config.event, properties=props)
            if "lon" in pos and "lat" in pos:
                lon, lat = row[pos["lon"]].strip(), row[pos["lat"]].strip()
                if lon or lat:
                    point = emit.location(lon, lat, path.name, reader.line_num, tid)
                    if point:
                        tweet.lon, tweet.lat = point
                        tweet.location_source, tweet.location_confidence = "geotag", 1.0
                        tweet.properties["geotag_kind"] = "point"
            report.kept += 1
            yield tweet
