"""Per-modality tweet searches on real CrisisLex posts: the words modality's candidate selection, the
indexes of migration 0012, and ingest with the embedding stage overlapped and deduplicated."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import psycopg
import pytest

from catalog import tweet_search
from catalog.db import connect
from catalog.tweets import embed_texts, ingest_tweets
from eofusion.fusion.base import RankedList
from eofusion.readers.tweets import IngestReport, Tweet, read_crisislex
from eofusion.social.embedding import TextEmbedder
from tests.conftest import data_path

EVENT = data_path("crisislex") / "CrisisLexT26" / "2013_Queensland_floods"
COLLECTION = "search-words"


def _tweets() -> list[Tweet]:
    tweets = list(read_crisislex(EVENT, report=IngestReport()))
    assert len(tweets) > 500
    for i, t in enumerate(tweets):  # a place for every other post, from the real text's event region
        if i % 2 == 0:
            t.lon, t.lat, t.location_source = 153.0 + (i % 97) / 100, -27.5 + (i % 89) / 100, "gazetteer"
    return tweets


@pytest.fixture(scope="module")
def stored(db_url: str) -> dict[str, object]:
    tweets = _tweets()
    report = ingest_tweets(db_url, tweets, COLLECTION, batch_size=400, embedder=TextEmbedder())
    with connect(db_url, autocommit=True) as conn:
        conn.execute("ANALYZE eofusion.tweets")
    return {"tweets": tweets, "report": report}


def _full_ranking(db_url: str, query: str, n: int) -> RankedList:
    """Every post sharing a word with the query, ranked by ts_rank_cd (no candidate selection)."""
    with connect(db_url) as conn:
        rows = conn.execute(
            "WITH q AS (SELECT replace(plainto_tsquery('simple', %s)::text, '&', '|')::tsquery AS q) "
            "SELECT t.id, ts_rank_cd(t.tsv, q.q, 32) AS s FROM eofusion.tweets t, q WHERE t.collection = %s "
            "AND t.tsv @@ q.q ORDER BY s DESC, t.id LIMIT %s", (query, COLLECTION, n)).fetchall()
    return RankedList("text", [r[0] for r in rows], [float(r[1]) for r in rows])


def test_ingest_embeds_every_stored_post_while_ingesting(stored: dict, db_url: str) -> None:
    report = stored["report"]
    assert report.stored == len(stored["tweets"]) and report.embedded == report.stored
    with connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE embedding IS NULL), (SELECT embedding_model FROM "
            "eofusion.tweet_collections WHERE collection = %s) FROM eofusion.tweets WHERE collection = %s",
            (COLLECTION, COLLECTION)).fetchone()
    assert row is not None
    missing, model = row
    assert missing == 0 and model == TextEmbedder().name


def test_identical_texts_are_embedded_once_and_keep_their_rows() -> None:
    class Counting:
        name = "counting"

        def __init__(self) -> None:
            self.seen: list[str] = []

        def embed(self, texts: list[str]) -> np.ndarray:
            self.seen += texts
            return TextEmbedder().embed(texts)

    texts = [t.text for t in _tweets()[:300]]
    rows = [(str(i), texts[i % 100]) for i in range(300)]  # every text three times, as retweets do
    counting = Counting()
    ids, vectors = embed_texts(counting, rows)
    assert ids == [i for i, _ in rows] and len(counting.seen) == len(set(texts[:100]))
    direct = TextEmbedder().embed([text for _, text in rows])
    assert np.allclose(vectors, direct, atol=1e-5)


def test_words_candidates_give_the_full_ranking_when_the_budget_allows(stored: dict, db_url: str) -> None:
    big = tweet_search.TextSearchConfig(candidate_budget=10**9, max_candidates=10**9)
    for tweet in stored["tweets"][:400:40]:
        with connect(db_url) as conn:
            ours = tweet_search.text(conn, COLLECTION, tweet.text, 50, big)
        full = _full_ranking(db_url, tweet.text, 50)
        assert ours.ids == full.ids and np.allclose(ours.scores, full.scores)


def test_a_small_budget_ranks_true_scores_and_keeps_the_best_posts(stored: dict, db_url: str) -> None:
    small = tweet_search.TextSearchConfig(candidate_budget=20, max_candidates=200)
    for tweet in stored["tweets"][:400:40]:
        full = _full_ranking(db_url, tweet.text, 50)
        with connect(db_url) as conn:
            ours = tweet_search.text(conn, COLLECTION, tweet.text, 50, small)
            exact: dict[str, float] = dict(conn.execute(
                "SELECT id, ts_rank_cd(tsv, replace(plainto_tsquery('simple', %s)::text, '&', '|')::tsquery, 32) "
                "FROM eofusion.tweets WHERE collection = %s AND id = ANY(%s)",
                (tweet.text, COLLECTION, list(ours.ids))).fetchall())
            every_word = {r[0] for r in conn.execute(
                "SELECT id FROM eofusion.tweets WHERE collection = %s AND id = ANY(%s) AND "
                "tsv @@ plainto_tsquery('simple', %s)", (COLLECTION, list(full.ids), tweet.text))}
        # Scores are the true cover-density ranks of those posts; posts holding every word of the
        # query are always candidates, so those of the full top 50 are in ours (fewer candidates
        # than posts can outrank them), the query post itself among them.
        assert np.allclose(ours.scores, [exact[i] for i in ours.ids])
        assert tweet.id in every_word or tweet.id not in full.ids
        assert every_word <= set(ours.ids)


def test_posts_holding_every_word_survive_a_cap_that_cuts_the_candidates(stored: dict, db_url: str) -> None:
    """When the cap cuts the rarest-words candidates, the every-word branch still runs and adds its posts."""
    cut = tweet_search.TextSearchConfig(candidate_budget=10**9, max_candidates=3, rounds=1)
    checked = 0
    for tweet in stored["tweets"][:400:20]:
        with connect(db_url) as conn:
            ours = tweet_search.text(conn, COLLECTION, tweet.text, 50, cut)
            matching, every_word = conn.execute(
                "SELECT count(*) FILTER (WHERE tsv @@ replace(plainto_tsquery('simple', %(q)s)::text, '&', '|')"
                "::tsquery), array_agg(id) FILTER (WHERE tsv @@ plainto_tsquery('simple', %(q)s)) "
                "FROM eofusion.tweets WHERE collection = %(c)s", {"q": tweet.text, "c": COLLECTION}).fetchone()
        if matching <= 3 or not every_word:
            continue
        checked += 1
        # All words chosen, so the first branch holds 3 posts matching any word; the second adds up to 3
        # posts holding every word (the query post's own text among them).
        assert len(set(ours.ids) & set(every_word)) == min(3, len(every_word))
    assert checked >= 10


def test_words_without_a_match_or_without_words(stored: dict, db_url: str) -> None:
    with connect(db_url) as conn:
        assert len(tweet_search.text(conn, COLLECTION, "zzqxv-unseen-word", 10).ids) == 0
        assert len(tweet_search.text(conn, COLLECTION, " ,;: ", 10).ids) == 0


def test_time_and_place_use_the_per_collection_indexes(stored: dict, db_url: str) -> None:
    when = datetime(2013, 1, 27, tzinfo=UTC)
    with connect(db_url) as conn:
        # A small table: show the indexes can deliver these plans (bench/late_fusion.py shows the planner
        # choosing them by itself at a million posts).
        for knob in ("seqscan", "bitmapscan"):
            conn.execute(f"SET enable_{knob} = off")
        # The datetime-only index (for filters without a collection) can look as cheap here, depending on the
        # physical order of these few rows: hidden for this transaction, which is rolled back.
        conn.execute("DROP INDEX eofusion.tweets_datetime_idx")
        place_plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN " + tweet_search.PLACE_SQL, {"lon": 153.0, "lat": -27.5, "c": COLLECTION, "n": 10}))
        time_plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN " + tweet_search.TIME_SQL, {"t": when, "c": COLLECTION, "n": 10}))
        near = tweet_search.place(conn, COLLECTION, 153.0, -27.5, 10)
        soon = tweet_search.time(conn, COLLECTION, when, 10)
        located = conn.execute("SELECT count(*) FROM eofusion.tweets WHERE collection = %s AND geometry IS NOT NULL",
                               (COLLECTION,)).fetchone()
        conn.rollback()
    # KNN straight from the index (no sort of every located post), one collection's posts only.
    assert "tweets_collection_geom_idx" in place_plan and "Order By: " in place_plan
    assert "tweets_collection_datetime_idx" in time_plan
    assert located is not None and located[0] > 10
    assert len(near.ids) == 10 and len(soon.ids) == 10
    assert list(near.scores) == sorted(near.scores, reverse=True)
    assert list(soon.scores) == sorted(soon.scores, reverse=True)
    with connect(db_url) as conn:  # the same posts as sorting every located post of the collection
        assert conn.execute("SELECT to_regclass('eofusion.tweets_datetime_idx')").fetchone()[0] is not None
        exact = conn.execute(
            "SELECT id FROM eofusion.tweets WHERE collection = %s AND geometry IS NOT NULL ORDER BY "
            "geometry <-> ST_SetSRID(ST_MakePoint(153.0, -27.5), 4326), id LIMIT 10", (COLLECTION,)).fetchall()
    assert set(near.ids) == {r[0] for r in exact}


def _searches(when: datetime) -> list[tweet_search.Search]:
    return [lambda c: tweet_search.text(c, COLLECTION, "flood warning Brisbane river", 50),
            lambda c: tweet_search.time(c, COLLECTION, when, 50),
            lambda c: tweet_search.place(c, COLLECTION, 153.0, -27.5, 50)]


def test_modalities_run_at_once_on_their_own_connections(stored: dict, db_url: str) -> None:
    """run_concurrently gives the sequential lists, in order, from searches that overlap on the server."""
    when = datetime(2013, 1, 27, tzinfo=UTC)
    with connect(db_url) as conn:
        sequential = [search(conn) for search in _searches(when)]
    # Every search waits at a barrier before its query: run one after another, the first would wait
    # forever (BrokenBarrierError after the timeout). Each records its server process.
    barrier = threading.Barrier(3, timeout=60)
    backends: list[int] = []

    def meeting(search: tweet_search.Search) -> tweet_search.Search:
        def run(c: object) -> RankedList:
            barrier.wait()
            backends.append(c.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[attr-defined]
            return search(c)  # type: ignore[arg-type]
        return run

    opened: list[int] = []

    @contextlib.contextmanager
    def connection() -> Iterator[object]:
        with connect(db_url) as c:
            opened.append(1)
            yield c

    lists = tweet_search.run_concurrently([meeting(s) for s in _searches(when)], connection)
    assert [lst.modality for lst in lists] == ["text", "time", "place"]
    for got, want in zip(lists, sequential, strict=True):
        assert got.ids == want.ids and np.array_equal(got.scores, want.scores)
        assert len(got.ids) == 50
    assert len(set(backends)) == 3 and len(opened) == 3


def test_a_failing_modality_fails_the_search_after_the_others_end(stored: dict, db_url: str) -> None:
    finished: list[str] = []

    def ok(c: object) -> RankedList:
        out = tweet_search.time(c, COLLECTION, datetime(2013, 1, 27, tzinfo=UTC), 5)  # type: ignore[arg-type]
        finished.append(out.modality)
        return out

    def broken(c: object) -> RankedList:
        c.execute("SELECT no_such_column FROM eofusion.tweets")  # type: ignore[attr-defined]
        raise AssertionError("unreachable")

    with pytest.raises(psycopg.errors.UndefinedColumn):
        tweet_search.run_concurrently([broken, ok], lambda: connect(db_url))
    assert finished == ["time"]
    assert tweet_search.run_concurrently([], lambda: connect(db_url)) == []
