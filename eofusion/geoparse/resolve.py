"""One location per tweet from its place mentions: candidate scoring and disambiguation.

Every candidate of every mention gets a score in log10 units, so that one point is worth a factor
of ten in population:

* ``log10(population)``: big places are mentioned more often;
* a bonus when the text wrote the place's main name rather than an alternate one (the Italian
  town "Olbia" over the Turkish city once called Olbia, Antalya);
* a bonus when a division or country named in the same tweet contains it ("Paris, Texas"), a
  larger one when it is named right after a comma (a qualifier), and a bonus for the caller's prior
  countries (e.g. the country of the event a collection is about);
* a bonus decaying with the great-circle distance (geopy) to the other places of the tweet.

The tweet's location is the best-scored mention of the most specific kind (city, then first-level
division, then country). Weak mentions (unconfirmed small towns, dictionary-word hashtags) are used
only when a candidate is corroborated by the other mentions or the prior countries. A tweet's own
coordinates (``location_source="geotag"``) are never replaced. An online geocoder (geopy's
Nominatim) is consulted only when explicitly configured, for names the gazetteer lacks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal, Protocol

from geopy.distance import great_circle

from eofusion.geoparse.gazetteer import Candidate, Place
from eofusion.geoparse.parser import Mention, PlaceParser
from eofusion.readers.tweets import Tweet

LocationSource = Literal["geotag", "gazetteer", "geocoder"]
_SPECIFICITY = {"city": 2, "admin1": 1, "country": 0}


@dataclass(frozen=True)
class GeocoderConfig:
    """The optional online geocoder (geopy's Nominatim). Off unless ``enabled``.

    Attributes:
        enabled: Query the geocoder for NER place names the gazetteer lacks.
        user_agent: Identifies the application, as Nominatim's usage policy requires.
        domain: A self-hosted Nominatim (host[:port]); None is the public OpenStreetMap service.
        timeout_s: Per-request timeout.
        min_delay_s: Minimum delay between requests (the public service allows one per second).
        confidence: Confidence given to a geocoded location.
    """

    enabled: bool = False
    user_agent: str = "eofusion-geoparse"
    domain: str | None = None
    timeout_s: float = 5.0
    min_delay_s: float = 1.0
    confidence: float = 0.5


class Geocoder(Protocol):
    """Anything that turns a place name into (lon, lat, display name)."""

    def geocode(self, name: str, country_codes: Sequence[str]) -> tuple[float, float, str] | None:
        """The best match for ``name`` (restricted to ``country_codes`` when given), or None."""
        ...


class NominatimGeocoder:
    """geopy's Nominatim, rate-limited and memoised. Constructing it makes no request."""

    def __init__(self, config: GeocoderConfig) -> None:
        from geopy.extra.rate_limiter import RateLimiter
        from geopy.geocoders import Nominatim

        kwargs: dict[str, Any] = {"user_agent": config.user_agent, "timeout": config.timeout_s}
        if config.domain:
            kwargs["domain"] = config.domain
        self._geocode = RateLimiter(Nominatim(**kwargs).geocode, min_delay_seconds=config.min_delay_s,
                                    max_retries=1, swallow_exceptions=True)
        self._cache: dict[tuple[str, tuple[str, ...]], tuple[float, float, str] | None] = {}

    def geocode(self, name: str, country_codes: Sequence[str]) -> tuple[float, float, str] | None:
        """Nominatim's first answer for ``name``, None when there is none or the service fails."""
        key = (name, tuple(sorted(c.lower() for c in country_codes)))
        if key not in self._cache:
            kwargs: dict[str, Any] = {"exactly_one": True}
            if key[1]:
                kwargs["country_codes"] = list(key[1])
            loc = self._geocode(name, **kwargs)
            self._cache[key] = (float(loc.longitude), float(loc.latitude), str(loc.address)) if loc else None
        return self._cache[key]


@dataclass(frozen=True)
class ResolverConfig:
    """Weights (log10 units: 1.0 is worth a factor of ten in population) and confidences.

    Attributes:
        prior_countries: ISO codes the caller expects (e.g. the event's country), for every tweet.
        main_name_bonus: The text wrote the place's main name.
        code_bonus: The text wrote one of its codes (YYC, NYC, USA).
        compact_bonus: A hashtag wrote its multi-word name without spaces.
        qualifier_bonus: A division/country right after a comma contains it ("Paris, Texas").
        admin_context_bonus: A first-level division named elsewhere in the tweet contains it.
        country_context_bonus: A country named elsewhere in the tweet contains it.
        prior_bonus: It lies in one of the prior countries.
        proximity_bonus: Maximum bonus for closeness to the tweet's other places...
        proximity_scale_km: ...decaying as exp(-distance / scale).
        corroboration_km: A weak mention's candidate is kept when this close to a place of the tweet.
        max_candidates: Candidates scored per mention (largest populations first).
        city_confidence: Confidence ceiling of a city.
        admin1_confidence: Confidence ceiling of a first-level division.
        country_confidence: Confidence ceiling of a country.
        weak_factor: Confidence multiplier for a weak or unconfirmed mention.
        geocoder: The optional online geocoder.
    """

    prior_countries: tuple[str, ...] = ()
    main_name_bonus: float = 1.5
    code_bonus: float = 0.5
    compact_bonus: float = 1.0
    qualifier_bonus: float = 4.0
    admin_context_bonus: float = 3.0
    country_context_bonus: float = 2.0
    prior_bonus: float = 2.0
    proximity_bonus: float = 2.0
    proximity_scale_km: float = 250.0
    corroboration_km: float = 300.0
    max_candidates: int = 25
    city_confidence: float = 0.9
    admin1_confidence: float = 0.5
    country_confidence: float = 0.25
    weak_factor: float = 0.8
    geocoder: GeocoderConfig = field(default_factory=GeocoderConfig)


@dataclass(frozen=True)
class Location:
    """Where a tweet is, and how we know.

    Attributes:
        lon: WGS84 longitude.
        lat: WGS84 latitude.
        name: The place's name (gazetteer main name, geocoder address, or the geotag's place).
        source: "geotag" (the tweet's own coordinates), "gazetteer" or "geocoder".
        confidence: In [0, 1].
        kind: "city", "admin1", "country" (None for geotags and geocoder answers).
        country: ISO code, when known.
        admin1: GeoNames first-level division code, when known.
        geonameid: GeoNames id, when known.
        mention: The text that named it.
    """

    lon: float
    lat: float
    name: str
    source: LocationSource
    confidence: float
    kind: str | None = None
    country: str | None = None
    admin1: str | None = None
    geonameid: int | None = None
    mention: str | None = None


@dataclass
class _Scored:
    mention: Mention
    candidates: list[Candidate]
    scores: list[float]

    @property
    def best(self) -> int:
        return max(range(len(self.scores)), key=lambda k: self.scores[k])


class Resolver:
    """Scores the candidates of a tweet's mentions and picks the tweet's location.

    Args:
        config: Weights and confidences.
        geocoder: An online geocoder to use for names the gazetteer lacks; when None, a Nominatim
            geocoder is created only if ``config.geocoder.enabled``.
    """

    def __init__(self, config: ResolverConfig = ResolverConfig(), geocoder: Geocoder | None = None) -> None:
        self.config = config
        if geocoder is None and config.geocoder.enabled:
            geocoder = NominatimGeocoder(config.geocoder)
        self.geocoder = geocoder

    def resolve(self, mentions: Sequence[Mention], prior_countries: Sequence[str] | None = None) -> Location | None:
        """The location named by a tweet's mentions, or None.

        Args:
            mentions: The parser's mentions for one text.
            prior_countries: ISO codes expected for this text; defaults to ``config.prior_countries``.
        """
        prior = {c.upper() for c in (prior_countries if prior_countries is not None else self.config.prior_countries)}
        usable = _dedupe([m for m in mentions if m.candidates])
        strong = [m for m in usable if not m.weak]
        admins, countries = _context(strong)
        kept: list[tuple[Mention, list[Candidate]]] = []
        for m in usable:
            cands = list(m.candidates[: self.config.max_candidates])
            if m.weak:
                cands = self._corroborated(m, cands, strong, admins, countries, prior)
            if cands:
                kept.append((m, cands))
        if not kept:
            return self._geocode(mentions, prior | countries)
        scored = [self._score(m, cands, kept, admins, countries, prior) for m, cands in kept]
        # Between mentions, population says little: the most specific kind wins, then a checked mention
        # over a weak one, a qualified one ("West, Texas"), and then the first named (headlines lead with it).
        chosen = max(scored, key=lambda s: (_SPECIFICITY[s.candidates[s.best].place.kind], not s.mention.weak,
                                            bool(s.mention.qualifier), -s.mention.start))
        place = chosen.candidates[chosen.best].place
        return Location(lon=place.lon, lat=place.lat, name=place.name, source="gazetteer",
                        confidence=self._confidence(chosen), kind=place.kind, country=place.country,
                        admin1=place.admin1 or None, geonameid=place.geonameid or None, mention=chosen.mention.text)

    def resolve_tweet(self, tweet: Tweet, mentions: Sequence[Mention],
                      prior_countries: Sequence[str] | None = None) -> Location | None:
        """Like :meth:`resolve`, but a tweet's own coordinates win over anything its text says."""
        if tweet.location_source == "geotag" and tweet.lon is not None and tweet.lat is not None:
            place = tweet.properties.get("place") or {}
            return Location(lon=tweet.lon, lat=tweet.lat, name=str(place.get("full_name") or ""), source="geotag",
                            confidence=tweet.location_confidence if tweet.location_confidence is not None else 1.0,
                            country=place.get("country_code"))
        return self.resolve(mentions, prior_countries)

    # --- scoring ----------------------------------------------------------------------------------

    def _corroborated(self, m: Mention, cands: list[Candidate], strong: list[Mention], admins: set[tuple[str, str]],
                      countries: set[str], prior: set[str]) -> list[Candidate]:
        """The candidates of a weak mention that the tweet's other places or the prior countries support.

        Closeness to another place of the tweet, or lying in a division it names, supports a candidate.
        A country (named or prior) supports it only when it is the mention's sole candidate there: "Waldo"
        names three small US towns, so a US prior does not say which.
        """
        near = []
        for c in cands:
            p = c.place
            if (p.country, p.admin1) in admins and p.kind == "city":
                near.append(c)
                continue
            for other in strong:
                if other.key != m.key and any(_km(p, oc.place) <= self.config.corroboration_km
                                              for oc in other.candidates[:3]):
                    near.append(c)
                    break
        if near:
            return near
        by_country = [c for c in cands if c.place.country in prior or c.place.country in countries]
        return by_country if len({c.place.country for c in by_country}) == len(by_country) else []

    def _score(self, m: Mention, cands: list[Candidate], kept: list[tuple[Mention, list[Candidate]]],
               admins: set[tuple[str, str]], countries: set[str], prior: set[str]) -> _Scored:
        cfg = self.config
        # Context from the other mentions only: "Colorado" must not promote the Brazilian town Colorado.
        others = [(om, oc) for om, oc in kept if om.key != m.key]
        own_admins, own_countries = _context([m])
        ctx_admins = {a for a in admins if a not in own_admins} | _qualifier_admins(m)
        ctx_countries = {c for c in countries if c not in own_countries} | {q.place.country for q in m.qualifier}
        anchors = [oc[k].place for _, oc in others for k in range(min(3, len(oc)))]
        scores = []
        for c in cands:
            p = c.place
            s = math.log10(max(p.population, 1) + 10)
            s += {"main": cfg.main_name_bonus, "code": cfg.code_bonus, "compact": cfg.compact_bonus}.get(c.flag, 0.0)
            if m.qualifier and any(_within(p, q.place) for q in m.qualifier):
                s += cfg.qualifier_bonus
            elif p.kind == "city" and (p.country, p.admin1) in ctx_admins:
                s += cfg.admin_context_bonus
            elif p.country in ctx_countries and p.kind != "country":
                s += cfg.country_context_bonus
            if p.country in prior:
                s += cfg.prior_bonus
            if anchors:
                nearest = min(_km(p, a) for a in anchors if a.index != p.index) if any(
                    a.index != p.index for a in anchors) else math.inf
                s += cfg.proximity_bonus * math.exp(-nearest / cfg.proximity_scale_km)
            scores.append(s)
        return _Scored(m, cands, scores)

    def _confidence(self, s: _Scored) -> float:
        cfg = self.config
        best = s.best
        top = s.scores[best]
        # Probability of the best candidate under a softmax of the scores (base 10: the log10 units).
        share = 1.0 / sum(10 ** (x - top) for x in s.scores)
        kind = s.candidates[best].place.kind
        ceiling = {"city": cfg.city_confidence, "admin1": cfg.admin1_confidence}.get(kind, cfg.country_confidence)
        conf = ceiling * (0.5 + 0.5 * share)
        if s.mention.weak or not (s.mention.confirmed or s.mention.source == "gazetteer"):
            conf *= cfg.weak_factor
        return round(min(1.0, max(0.0, conf)), 3)

    def _geocode(self, mentions: Sequence[Mention], countries: set[str]) -> Location | None:
        if self.geocoder is None:
            return None
        for m in mentions:
            if m.candidates or m.source != "ner":
                continue
            got = self.geocoder.geocode(m.text, sorted(countries))
            if got is not None:
                lon, lat, name = got
                return Location(lon=lon, lat=lat, name=name, source="geocoder",
                                confidence=self.config.geocoder.confidence, mention=m.text)
        return None


# --- helpers ---------------------------------------------------------------------------------------


def _dedupe(mentions: list[Mention]) -> list[Mention]:
    """One mention per name, preferring a strong and a qualified one ("Boulder" and "#boulder")."""
    best: dict[str, Mention] = {}
    for m in mentions:
        cur = best.get(m.key)
        if cur is None or (cur.weak, not cur.qualifier) > (m.weak, not m.qualifier):
            best[m.key] = m
    return sorted(best.values(), key=lambda m: m.start)


def _context(mentions: Iterable[Mention]) -> tuple[set[tuple[str, str]], set[str]]:
    """Divisions and countries the mentions may name (their division/country candidates and qualifiers)."""
    admins: set[tuple[str, str]] = set()
    countries: set[str] = set()
    for m in mentions:
        for c in list(m.candidates) + list(m.qualifier):
            if c.place.kind == "admin1":
                admins.add((c.place.country, c.place.admin1))
                countries.add(c.place.country)
            elif c.place.kind == "country":
                countries.add(c.place.country)
    return admins, countries


def _qualifier_admins(m: Mention) -> set[tuple[str, str]]:
    return {(q.place.country, q.place.admin1) for q in m.qualifier if q.place.kind == "admin1"}


def _within(p: Place, area: Place) -> bool:
    if area.kind == "country":
        return p.country == area.country and p.kind != "country"
    if area.kind == "admin1":
        return (p.country, p.admin1) == (area.country, area.admin1) and p.kind == "city"
    return False


def _km(a: Place, b: Place) -> float:
    if a.index > b.index:
        a, b = b, a
    return _km_cached(a.index, a.lat, a.lon, b.index, b.lat, b.lon)


@lru_cache(maxsize=1 << 18)
def _km_cached(ai: int, alat: float, alon: float, bi: int, blat: float, blon: float) -> float:
    # The same pairs (Boulder-Colorado, Olbia-Sardinia) recur in every tweet of an event.
    return float(great_circle((alat, alon), (blat, blon)).km)


# --- tweets ---------------------------------------------------------------------------------------


PriorCountries = Sequence[str] | Callable[[Tweet], Sequence[str]]


def geoparse_tweets(tweets: Iterable[Tweet], parser: PlaceParser, resolver: Resolver,
                    prior_countries: PriorCountries = (), parse_geotagged: bool = False,
                    batch_size: int = 512) -> Iterator[Tweet]:
    """Tweets with a location from their text when they have none of their own.

    A geotagged tweet keeps its coordinates (and is not even parsed unless ``parse_geotagged``).
    Others get ``lon``/``lat``, ``location_source`` ("gazetteer" or "geocoder"),
    ``location_confidence`` and ``properties["geoparse"]`` (place name, kind, country, GeoNames id,
    the mention, and all mentions found).

    Args:
        tweets: Any iterable (streamed in batches).
        parser: The mention finder.
        resolver: The disambiguator.
        prior_countries: ISO codes expected for every tweet, or a function of the tweet (e.g. by event).
        parse_geotagged: Also list the mentions of geotagged tweets in their properties.
        batch_size: Tweets per parser batch.

    Yields:
        The same tweet objects, updated in place, in input order.
    """
    batch: list[Tweet] = []
    for tweet in tweets:
        batch.append(tweet)
        if len(batch) >= batch_size:
            yield from _geoparse_batch(batch, parser, resolver, prior_countries, parse_geotagged)
            batch = []
    if batch:
        yield from _geoparse_batch(batch, parser, resolver, prior_countries, parse_geotagged)


def _geoparse_batch(batch: list[Tweet], parser: PlaceParser, resolver: Resolver, prior: PriorCountries,
                    parse_geotagged: bool) -> Iterator[Tweet]:
    geotagged = [t.location_source == "geotag" and t.lon is not None for t in batch]
    todo = [i for i, g in enumerate(geotagged) if parse_geotagged or not g]
    found = dict(zip(todo, parser.parse_many(batch[i].text for i in todo), strict=True))
    for i, tweet in enumerate(batch):
        mentions = found.get(i, [])
        countries = prior(tweet) if callable(prior) else prior
        loc = resolver.resolve_tweet(tweet, mentions, countries)
        info: dict[str, Any] = {"mentions": [m.text for m in mentions]}
        if loc is not None and loc.source != "geotag":
            tweet.lon, tweet.lat = loc.lon, loc.lat
            tweet.location_source, tweet.location_confidence = loc.source, loc.confidence
            info.update(name=loc.name, kind=loc.kind, country=loc.country, geonameid=loc.geonameid,
                        mention=loc.mention)
        if mentions or (loc is not None and loc.source != "geotag"):
            tweet.properties["geoparse"] = info
        yield tweet
