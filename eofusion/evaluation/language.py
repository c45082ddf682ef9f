"""A small stop-word language guesser for labelling evaluation queries by language.

CrisisLex tweets carry no language code, and no language-identification model ships with the
project. Function words are the most reliable cue in short texts, so every language is scored by
the number of its *exclusive* function words (in spaCy's stop-word list of that language and of no
other listed language) among the words of the text; hashtags, mentions and URLs are ignored. The
guess is the best-scoring language with at least ``min_hits`` hits and strictly more than the
runner-up, else ``"und"``. Mixed English-Tagalog ("Taglish") texts count as Tagalog when Tagalog
reaches ``min_hits``: the Tagalog words are what an English-only model cannot read.

Only a labelling aid for reporting metrics per language: it is not used by any search.
"""

from __future__ import annotations

import importlib
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cache

__all__ = ["LanguageGuesser", "UNDETERMINED"]

UNDETERMINED = "und"

_NOISE = re.compile(r"https?://\S+|[@#]\w+|&\w+;")
_WORD = re.compile(r"[^\W\d_]+")


@cache
def _exclusive_stop_words(languages: tuple[str, ...], min_chars: int) -> dict[str, frozenset[str]]:
    """Per language, its stop words of at least ``min_chars`` letters found in no other listed language."""
    lists = {}
    for lang in languages:
        module = importlib.import_module(f"spacy.lang.{lang}.stop_words")
        lists[lang] = {w.lower() for w in module.STOP_WORDS if len(w) >= min_chars}
    seen = Counter(w for words in lists.values() for w in words)
    return {lang: frozenset(w for w in words if seen[w] == 1) for lang, words in lists.items()}


@dataclass(frozen=True)
class LanguageGuesser:
    """Guess the language of a short text from its function words.

    Attributes:
        languages: spaCy language codes to choose from.
        min_hits: Exclusive function words needed to name a language.
        min_chars: Shorter stop words are ignored: two-letter words ("di", "si", "la") are shared
            by too many languages and names to be evidence.
        preferred: Languages that win whenever they reach ``min_hits``, even against a larger
            count of another language (code-switched text is labelled by its rarer language).
    """

    languages: tuple[str, ...] = ("en", "it", "tl")
    min_hits: int = 1
    min_chars: int = 3
    preferred: tuple[str, ...] = field(default=("tl",))

    def hits(self, text: str) -> dict[str, int]:
        """Number of exclusive function words of every language in ``text``.

        Args:
            text: Any text (tweet).

        Returns:
            ``{language: hits}`` for every configured language.
        """
        words = [w.lower() for w in _WORD.findall(_NOISE.sub(" ", text))]
        excl = _exclusive_stop_words(self.languages, self.min_chars)
        return {lang: sum(w in excl[lang] for w in words) for lang in self.languages}

    def guess(self, text: str) -> str:
        """The language code of ``text``, or ``"und"`` when the evidence is too weak or tied.

        Args:
            text: Any text (tweet).

        Returns:
            One of ``languages`` or :data:`UNDETERMINED`.
        """
        counts = self.hits(text)
        for lang in self.preferred:
            if counts.get(lang, 0) >= self.min_hits:
                return lang
        ranked = sorted(counts.values(), reverse=True)
        best = max(counts, key=lambda lang: counts[lang])
        if counts[best] < self.min_hits or (len(ranked) > 1 and ranked[1] == ranked[0]):
            return UNDETERMINED
        return best
