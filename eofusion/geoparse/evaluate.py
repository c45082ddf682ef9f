"""Precision and recall of geoparsing against hand-labelled tweets (``tests/fixtures/geoparse_gold.json``).

A prediction is correct when it lies within the fixture's ``tolerance_km`` of the gold point or of
one of its ``also`` points, or, for a gold division or country, when it is that division or country.
Precision = correct / tweets given a location; recall = correct / tweets whose gold has a place.
``near``: located tweets whose location lies within ``near_km`` (161 km, 100 miles: the usual
"accuracy at 161 km" of geolocation studies) of the gold point or an ``also`` point; a location given
to a tweet that names no place is never near.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geopy.distance import great_circle

from eofusion.geoparse.parser import PlaceParser
from eofusion.geoparse.resolve import Location, Resolver

#: Radius of the "within 100 miles" share.
NEAR_KM = 161.0


@dataclass
class Scores:
    """Counts and rates for one group of gold tweets.

    Attributes:
        tweets: Gold tweets in the group.
        with_place: Gold tweets that name a place.
        predicted: Tweets the geoparser located.
        correct: Located tweets whose location matches the gold.
        near: Located tweets within ``near_km`` of the gold (see the module docstring).
        errors: (id, gold place, predicted name) of the wrong or missed ones.
    """

    tweets: int = 0
    with_place: int = 0
    predicted: int = 0
    correct: int = 0
    near: int = 0
    errors: list[tuple[str, str | None, str | None]] = field(default_factory=list)

    @property
    def precision(self) -> float:
        """Correct / predicted (1.0 when nothing was predicted)."""
        return self.correct / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        """Correct / gold tweets with a place."""
        return self.correct / self.with_place if self.with_place else 1.0

    @property
    def located_share(self) -> float:
        """Tweets given a location / tweets."""
        return self.predicted / self.tweets if self.tweets else 0.0

    @property
    def near_share(self) -> float:
        """Located tweets within ``near_km`` of the gold / located tweets (1.0 when none was located)."""
        return self.near / self.predicted if self.predicted else 1.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall."""
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def load_gold(path: Path) -> dict[str, Any]:
    """The gold fixture as a dict (``tolerance_km``, ``tweets``...)."""
    data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return data


def is_correct(loc: Location, gold: dict[str, Any], tolerance_km: float) -> bool:
    """Whether a predicted location matches a gold record (see the module docstring)."""
    for g in [gold, *gold.get("also", [])]:
        if great_circle((loc.lat, loc.lon), (g["lat"], g["lon"])).km <= tolerance_km:
            return True
        if g["kind"] == "country" and loc.kind == "country" and loc.country == g["country"]:
            return True
        if (g["kind"] == "admin1" and loc.kind == "admin1" and loc.country == g["country"]
                and loc.admin1 == g["admin1"]):
            return True
    return False


def distance_km(loc: Location, gold: dict[str, Any]) -> float:
    """Great-circle distance from a location to the nearest of the gold point and its ``also`` points."""
    return min(great_circle((loc.lat, loc.lon), (g["lat"], g["lon"])).km for g in [gold, *gold.get("also", [])])


def evaluate(gold: dict[str, Any], parser: PlaceParser, resolver: Resolver,
             prior: Callable[[dict[str, Any]], Sequence[str]] | None = None,
             near_km: float = NEAR_KM) -> dict[str, Scores]:
    """Scores per language ("en", "it", "es" when present) and overall ("all").

    Args:
        gold: The fixture (see :func:`load_gold`).
        parser: The mention finder.
        resolver: The disambiguator.
        prior: Prior countries for a gold record (e.g. its event's country); none when None.
        near_km: Radius of :attr:`Scores.near`.
    """
    records = gold["tweets"]
    tol = float(gold.get("tolerance_km", 50))
    out: dict[str, Scores] = {"all": Scores()}
    for rec, mentions in zip(records, parser.parse_many(r["text"] for r in records), strict=True):
        loc = resolver.resolve(mentions, prior(rec) if prior else ())
        for key in ("all", rec["lang"]):
            s = out.setdefault(key, Scores())
            s.tweets += 1
            has_place = rec.get("place") is not None
            s.with_place += has_place
            if loc is not None:
                s.predicted += 1
                s.near += has_place and distance_km(loc, rec) <= near_km
                if has_place and is_correct(loc, rec, tol):
                    s.correct += 1
                    continue
            if loc is not None or has_place:
                s.errors.append((rec["id"], rec.get("place"), loc.name if loc else None))
    return out


def format_table(rows: dict[str, dict[str, Scores]]) -> str:
    """A Markdown table: one row per (setting, language)."""
    lines = ["| setting | lang | tweets | with place | located | correct | precision | recall | F1 | located share "
             "| within 161 km |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for setting, scores in rows.items():
        for lang in ("en", "it", "es", "all"):
            s = scores.get(lang)
            if s is None:
                continue
            lines.append(f"| {setting} | {lang} | {s.tweets} | {s.with_place} | {s.predicted} | {s.correct} | "
                         f"{s.precision:.2f} | {s.recall:.2f} | {s.f1:.2f} | {s.located_share:.2f} | "
                         f"{s.near_share:.2f} |")
    return "\n".join(lines)
