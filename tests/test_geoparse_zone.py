"""The parser's spaCy memory zone spans batches (speed) without changing mentions or growing the vocabulary."""

from __future__ import annotations

from pathlib import Path

import spacy

from eofusion.geoparse.gazetteer import GazetteerConfig, load_gazetteer
from eofusion.geoparse.parser import Mention, ParserConfig, PlaceParser
from eofusion.readers.tweets import IngestReport, read_crisislex
from tests.conftest import data_path

EVENTS = data_path("crisislex") / "CrisisLexT26"


def _key(mentions: list[Mention]) -> list[str]:
    return [repr(m) for m in mentions]


def test_zone_across_batches_gives_the_same_mentions_and_frees_the_strings(tmp_path: Path) -> None:
    texts = [t.text for t in read_crisislex(EVENTS / "2013_Colorado_floods", report=IngestReport())][:300]
    texts += [t.text for t in read_crisislex(EVENTS / "2013_Sardinia_floods", report=IngestReport())][:300]
    gazetteer = load_gazetteer(GazetteerConfig(cache_dir=tmp_path))
    nlp = spacy.load(ParserConfig().model, exclude=["parser", "tagger", "attribute_ruler", "lemmatizer", "senter"])
    per_batch = PlaceParser(ParserConfig(batch_size=50, zone_texts=50), gazetteer=gazetteer, nlp=nlp)
    spanning = PlaceParser(ParserConfig(batch_size=50, zone_texts=100_000), gazetteer=gazetteer, nlp=nlp)

    expected = [_key(m) for m in per_batch.parse_many(texts)]
    strings_before = len(nlp.vocab.strings)
    got = [_key(m) for m in spanning.parse_many(texts)]
    assert got == expected
    assert sum(map(len, got)) > 100  # real place mentions were found
    # The zone is still open (fewer texts than zone_texts): the batch strings are held until it closes.
    spanning.close_zone()
    assert len(nlp.vocab.strings) == strings_before
    # A parser reopens a zone on its next batch.
    assert [_key(m) for m in spanning.parse_many(texts[:60])] == expected[:60]
    spanning.close_zone()
    assert len(nlp.vocab.strings) == strings_before
