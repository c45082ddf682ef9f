"""Geoparsing: gazetteer, parser and resolver, evaluated on hand-labelled real CrisisLex tweets.

``tests/fixtures/geoparse_gold.json`` holds English tweets (Colorado, Alberta, Queensland and
Philippine floods) and Italian ones (2013 Sardinia floods, 2012 Emilia earthquakes), each with the
place a reader sees in it (or none). Precision and recall are printed per language, with and
without the event's country as a prior, and must stay above floors set from what the method
achieves (see ``bench/results_geoparse.md``). No test touches the network.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from eofusion.geoparse.evaluate import evaluate, format_table, load_gold
from eofusion.geoparse.gazetteer import (
    ADMIN1_TABLE,
    US_STATE_POINTS,
    Gazetteer,
    GazetteerConfig,
    load_gazetteer,
    normalize,
)
from eofusion.geoparse.parser import Mention, ParserConfig, PlaceParser, parser_stats
from eofusion.geoparse.resolve import Location, Resolver, ResolverConfig, geoparse_tweets
from eofusion.readers.tweets import Tweet, crisislex_event_info, read_crisislex_t26
from tests.conftest import data_path

CRISISLEX = data_path("crisislex")
T26 = CRISISLEX / "CrisisLexT26"
GOLD = Path(__file__).resolve().parent / "fixtures" / "geoparse_gold.json"

#: Floors under the measured scores (bench/results_geoparse.md): a regression fails, noise does not.
FLOORS = {  # (language, prior): (precision, recall)
    ("en", "none"): (0.85, 0.55), ("en", "event"): (0.85, 0.80),
    ("it", "none"): (0.85, 0.80), ("it", "event"): (0.85, 0.80),
}


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def gazetteer() -> Gazetteer:
    return load_gazetteer(GazetteerConfig())


@pytest.fixture(scope="module")
def parser(gazetteer: Gazetteer) -> PlaceParser:
    return PlaceParser(ParserConfig(), gazetteer=gazetteer)


@pytest.fixture(scope="module")
def resolver() -> Resolver:
    return Resolver()


def locate(parser: PlaceParser, resolver: Resolver, text: str, prior: Sequence[str] = ()) -> Location | None:
    return resolver.resolve(parser.parse(text), prior)


# --- evaluation on the gold tweets -------------------------------------------------------------------


def test_gold_fixture_holds_the_real_texts() -> None:
    gold = load_gold(GOLD)
    by_event: dict[str, list[dict[str, Any]]] = {}
    for rec in gold["tweets"]:
        by_event.setdefault(rec["event"], []).append(rec)
    for event, recs in by_event.items():
        texts = {t.id: t.text for t in read_crisislex_t26(T26 / event)}
        assert all(texts[r["id"]] == r["text"] for r in recs), event
    langs = [r["lang"] for r in gold["tweets"]]
    assert 60 <= len(langs) <= 130 and langs.count("it") >= 30 and langs.count("en") >= 50
    assert sum(r["place"] is None for r in gold["tweets"]) >= 10


def test_precision_and_recall_on_gold_tweets(parser: PlaceParser, resolver: Resolver,
                                             gazetteer: Gazetteer) -> None:
    gold = load_gold(GOLD)
    priors = {e: gazetteer.country_code(crisislex_event_info(T26 / e)["country"])
              for e in {r["event"] for r in gold["tweets"]}}
    assert priors["2013_Manila_floods"] == "PH"  # "Phillipines" in the event file
    rows = {
        "prior=none": evaluate(gold, parser, resolver),
        "prior=event country": evaluate(gold, parser, resolver, lambda r: [priors[r["event"]]]),
    }
    print("\n" + format_table(rows))
    for setting, scores in rows.items():
        for lang in ("en", "it"):
            s = scores[lang]
            print(f"{setting} {lang} errors: {s.errors}")
            p_floor, r_floor = FLOORS[(lang, "none" if setting == "prior=none" else "event")]
            assert s.precision >= p_floor, (setting, lang, s.precision)
            assert s.recall >= r_floor, (setting, lang, s.recall)


# --- unit behaviour -----------------------------------------------------------------------------------


def test_geotag_is_kept(parser: PlaceParser, resolver: Resolver) -> None:
    tweet = Tweet(id="1", text="Flooding in Paris and Genoa tonight", datetime=None, lon=-105.27, lat=40.01,
                  location_source="geotag", location_confidence=1.0)
    plain = Tweet(id="2", text="Flooding in Paris and Genoa tonight", datetime=None)
    out = list(geoparse_tweets([tweet, plain], parser, resolver))
    assert (out[0].lon, out[0].lat, out[0].location_source, out[0].location_confidence) == (-105.27, 40.01,
                                                                                            "geotag", 1.0)
    assert "geoparse" not in out[0].properties
    assert out[1].location_source == "gazetteer" and out[1].properties["geoparse"]["mentions"] == ["Paris", "Genoa"]
    loc = resolver.resolve_tweet(tweet, parser.parse(tweet.text))
    assert loc is not None and loc.source == "geotag" and (loc.lon, loc.lat) == (-105.27, 40.01)


def test_genova_and_genoa_are_the_same_city(parser: PlaceParser, resolver: Resolver, gazetteer: Gazetteer) -> None:
    it = locate(parser, resolver, "Allerta meteo: esonda il Bisagno a Genova, scuole chiuse")
    en = locate(parser, resolver, "Heavy floods in Genoa tonight, schools closed")
    assert it is not None and en is not None and it.geonameid == en.geonameid and it.name == "Genoa"
    assert it.country == "IT" and it.source == "gazetteer" and 0 < it.confidence <= 1
    assert [p.name for p in gazetteer.search("Firenze")][:1] == ["Florence"]
    assert [p.name for p in gazetteer.search("Helsingfors")][:1] == ["Helsinki"]
    assert gazetteer.search("GÉNOVA")[0].name == gazetteer.search("genova")[0].name


def test_country_and_division_context(parser: PlaceParser, resolver: Resolver) -> None:
    texas = locate(parser, resolver, "A tornado hit Paris, Texas last night")
    assert texas is not None and (texas.name, texas.country, texas.admin1) == ("Paris", "US", "TX")
    assert locate(parser, resolver, "Tornado damage in Paris, TX").country == "US"  # type: ignore[union-attr]
    france = locate(parser, resolver, "Floods in Paris tonight")
    assert france is not None and france.country == "FR"
    # A division named elsewhere in the tweet, or the caller's prior country, decides too.
    near = locate(parser, resolver, "Tornado hits Paris in northeast Texas")
    assert near is not None and (near.country, near.admin1) == ("US", "TX")
    boston = locate(parser, resolver, "Flood warning for Boston tonight", prior=["GB"])
    assert boston is not None and boston.country == "GB"
    assert locate(parser, resolver, "Flood warning for Boston tonight").country == "US"  # type: ignore[union-attr]
    # Sardinian town, not the Turkish city once called Olbia.
    olbia = locate(parser, resolver, "Alluvione a Olbia, case allagate")
    assert olbia is not None and (olbia.name, olbia.country) == ("Olbia", "IT")


def test_common_words_are_not_places(parser: PlaceParser) -> None:
    for text in ("Nice work guys, hope everyone is safe", "Reading the news on my Mobile. Of course.",
                 "Hope you are ok. Come stai? Tutto bene?", "Of course we will help, God bless",
                 "The Police and the Red Cross are at the Airport", "Hurricane Sandy and Typhoon Pablo",
                 "Metro-North train derailed in the Bronx", "Best wishes #Pray #Hope"):
        found = [m.text for m in parser.parse(text) if m.candidates and not m.weak]
        assert "Nice" not in found and "Mobile" not in found and "Hope" not in found, (text, found)
        assert not {"Of", "Come", "God", "Reading", "Police", "Red Cross", "Airport", "Sandy", "Pablo", "Metro",
                    "Best", "Pray"} & set(found), (text, found)
    # The same words do name places when the text says so.
    assert [m.text for m in parser.parse("Flooding in Nice, France")][:1] == ["Nice"]
    assert "Mobile" in [m.text for m in parser.parse("Hurricane warning for Mobile, Alabama")]


def test_italian_and_hashtag_places(parser: PlaceParser) -> None:
    def found(text: str) -> list[tuple[str, bool, set[str]]]:
        return [(m.text, m.weak, {c.place.name for c in m.candidates}) for m in parser.parse(text)]

    sardegna, olbia, genova = found("Alluvione in Sardegna: morti a Olbia, allerta anche a Genova")
    assert sardegna == ("Sardegna", False, {"Sardinia"})
    assert olbia[0] == "Olbia" and {"Olbia", "Antalya"} <= olbia[2]  # the resolver prefers the main name
    assert genova[0] == "Genova" and "Genoa" in genova[2]
    assert [(t, w) for t, w, _ in found("#yycflood #BoulderFlood #bigwet #PrayForThePhilippines")] == [
        ("yyc", False), ("Boulder", False), ("Philippines", False)]
    # A small town's hashtag is kept but weak (the resolver wants corroboration); a state code is not.
    assert [(t, w) for t, w, _ in found("Roads closed around #HighRiver and #qld")] == [
        ("HighRiver", True), ("qld", False)]
    assert [t for t, _, _ in found("Evacuation at Lac-Mégantic, Québec")] == ["Lac-Mégantic", "Québec"]
    # Two-letter codes glued to a hazard word are weak: Colorado or Colombia until something decides.
    (co,) = parser.parse("Volunteers needed #COflood")
    assert co.weak and {c.place.name for c in co.candidates} >= {"Colorado", "Colombia"}
    # ...and alone in upper-case text they are words.
    assert found("PLEASE HELP US, PUTANG INA MO") == []


def test_weak_mentions_need_corroboration(parser: PlaceParser, resolver: Resolver) -> None:
    assert locate(parser, resolver, "Volunteers needed #COflood") is None
    co = locate(parser, resolver, "Volunteers needed #COflood", prior=["US"])
    assert co is not None and co.name == "Colorado"
    both = locate(parser, resolver, "Sandbags in #bundaberg, Queensland")
    assert both is not None and both.name == "Bundaberg" and both.confidence < 0.9


def test_online_geocoder_is_off_unless_configured(parser: PlaceParser) -> None:
    assert Resolver().geocoder is None and Resolver(ResolverConfig()).geocoder is None

    class FakeGeocoder:
        def __init__(self) -> None:
            self.calls: list[tuple[str, Sequence[str]]] = []

        def geocode(self, name: str, country_codes: Sequence[str]) -> tuple[float, float, str] | None:
            self.calls.append((name, tuple(country_codes)))
            return (120.98, 14.6, f"{name} (fake)")

    text = "Flooding on Kalentong Street near Santolan Bridge"
    mentions = [Mention("Santolan Bridge", 34, 49, "santolan bridge", "ner", ())]
    assert Resolver().resolve(mentions) is None  # no gazetteer place, no geocoder: no location
    fake = FakeGeocoder()
    loc = Resolver(geocoder=fake).resolve(mentions, ["PH"])
    assert loc is not None and loc.source == "geocoder" and fake.calls == [("Santolan Bridge", ("PH",))]
    assert parser.parse(text) is not None  # parsing alone never needs a geocoder


def test_admin1_tables_agree_with_package_cities(gazetteer: Gazetteer) -> None:
    # Every explicit division point lies among the package's cities of that GeoNames code: a wrong
    # code or a typo in the coordinates would put it elsewhere.
    rows = [(r.country, r.code, r.lat, r.lon) for r in ADMIN1_TABLE]
    rows += [("US", code, lat, lon) for code, (lat, lon) in US_STATE_POINTS.items()]
    members: dict[tuple[str, str], list[int]] = {}
    for i in range(len(gazetteer)):
        if gazetteer.kinds[i] == 0:
            members.setdefault((gazetteer.country[i], gazetteer.admin1[i]), []).append(i)
    for country, code, lat, lon in rows:
        idx = members.get((country, code), [])
        assert len(idx) >= 5, (country, code)
        lats = [gazetteer.lat[i] for i in idx]
        lons = [gazetteer.lon[i] for i in idx]
        assert min(lats) - 1 <= lat <= max(lats) + 1 and min(lons) - 1 <= lon <= max(lons) + 1, (country, code)
        assert gazetteer.admin1_place(country, code) is not None


def test_normalised_lookups(gazetteer: Gazetteer) -> None:
    assert normalize("Lac-Mégantic") == "lac megantic" and normalize("L'Aquila") == "l aquila"
    assert normalize("  GENOVA ") == "genova" and normalize("Torpè") == "torpe"
    (sardegna,) = gazetteer.search("sardegna")
    assert (sardegna.name, sardegna.kind, sardegna.country, sardegna.admin1) == ("Sardinia", "admin1", "IT", "14")
    assert gazetteer.search("SARDINIA")[0] == sardegna
    assert gazetteer.country_code("Italy") == "IT" and gazetteer.country_code("Philipinnes") == "PH"
    assert gazetteer.country_code("US") == "US" and gazetteer.country_code("Atlantis") is None


def test_gazetteer_cache_round_trip(gazetteer: Gazetteer, tmp_path: Path) -> None:
    import pickle

    path = tmp_path / "g.pickle"
    path.write_bytes(pickle.dumps(gazetteer, protocol=pickle.HIGHEST_PROTOCOL))
    again = pickle.loads(path.read_bytes())
    assert len(again) == len(gazetteer) and again.lookup("Genova")[0] == gazetteer.lookup("Genova")[0]


# --- real data, batched ---------------------------------------------------------------------------------


def _chunks(items: list[Tweet], n: int) -> Iterator[list[Tweet]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def test_geoparse_a_real_event_in_batches(parser: PlaceParser, resolver: Resolver) -> None:
    tweets = list(read_crisislex_t26(T26 / "2013_Colorado_floods"))[:400]
    before = parser_stats(parser)
    start = time.perf_counter()
    out = list(geoparse_tweets(tweets, parser, resolver, prior_countries=["US"], batch_size=128))
    rate = len(out) / (time.perf_counter() - start)
    stats = parser_stats(parser)
    share = (stats["ner_runs"] - before["ner_runs"]) / (stats["docs"] - before["docs"])
    print(f"\n400 Colorado tweets: {rate:.0f} tweets/s, NER on {share:.0%} of them")
    located = [t for t in out if t.location_source == "gazetteer"]
    assert [t.id for t in out] == [t.id for t in tweets]
    assert len(located) >= 0.6 * len(out)
    in_colorado = [t for t in located if 36.9 <= t.lat <= 41.1 and -109.1 <= t.lon <= -102.0]  # type: ignore[operator]
    assert len(in_colorado) >= 0.85 * len(located)
    assert all(0 < t.location_confidence <= 1 for t in located)  # type: ignore[operator]
    assert share < 0.35  # the NER only runs on tweets with an ambiguous name
