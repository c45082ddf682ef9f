"""The late-fusion evaluation: metric and protocol properties, then a run on real CrisisLex posts.

The database part ingests the first posts of two real CrisisLexT26 flood events (English and
Italian) through the real path (readers, geoparser, tweets table, MiniLM embeddings) into the test
cluster and runs the same evaluation code as ``bench/late_fusion_eval.py``.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from eofusion.evaluation.language import UNDETERMINED, LanguageGuesser
from eofusion.evaluation.late_fusion import (
    LabelledPost,
    MetricTable,
    RelevanceIndex,
    score_ranking,
    stratified_sample,
    without,
)
from eofusion.fusion import RankedList
from eofusion.readers.tweets import read_crisislex
from tests.conftest import data_path

ROOT = Path(__file__).resolve().parents[1]
T26 = data_path("crisislex") / "CrisisLexT26"
EVENTS = ("2013_Colorado_floods", "2013_Sardinia_floods")
INFORMATIVE = "Related and informative"
Evaluated = tuple[ModuleType, Any, dict[str, Any]]


def _bench() -> ModuleType:
    """bench/late_fusion_eval.py as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("late_fusion_eval", ROOT / "bench" / "late_fusion_eval.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _real_posts(n_per_event: int = 200) -> list[LabelledPost]:
    guesser = LanguageGuesser()
    out = []
    for event in EVENTS:
        for t in list(read_crisislex(T26 / event))[:n_per_event]:
            out.append(LabelledPost(t.id, event, guesser.guess(t.text),
                                    t.properties["informativeness"] == INFORMATIVE))
    return out


# --- metrics and protocol (pure) -------------------------------------------------------------------


def test_perfect_ranking_scores_one_and_reversed_scores_lower() -> None:
    posts = _real_posts()
    rel_index = RelevanceIndex(posts)
    query = next(p for p in posts if p.informative and p.event == EVENTS[1])
    relevant = rel_index.relevant(query)
    others = [p.id for p in posts if p.id not in relevant and p.id != query.id]
    assert len(relevant) > 20 and len(others) > 20
    perfect = sorted(relevant) + others
    depth = 50
    best = score_ranking(perfect, relevant, depth)
    assert best.precision_at_k == 1.0 and best.average_precision == 1.0
    reverse = list(reversed(perfect))
    worst = score_ranking(reverse, relevant, depth)
    assert worst.average_precision < best.average_precision and worst.precision_at_k < 1.0
    # A random order sits between the two, and the metrics stay in [0, 1].
    shuffled = perfect[:]
    random.Random(0).shuffle(shuffled)
    mid = score_ranking(shuffled, relevant, depth)
    assert worst.average_precision <= mid.average_precision < best.average_precision
    assert 0.0 <= mid.precision_at_k <= 1.0
    # Swapping one relevant item below a non-relevant one lowers AP.
    swapped = perfect[:]
    swapped[0], swapped[len(relevant)] = swapped[len(relevant)], swapped[0]
    assert score_ranking(swapped, relevant, depth).average_precision < 1.0


def test_relevant_set_is_same_event_informative_without_the_query() -> None:
    posts = _real_posts()
    index = RelevanceIndex(posts)
    by_id = {p.id: p for p in posts}
    for query in posts[::37]:
        relevant = index.relevant(query)
        assert query.id not in relevant
        assert all(by_id[i].event == query.event and by_id[i].informative for i in relevant)
        expected = {p.id for p in posts if p.event == query.event and p.informative} - {query.id}
        assert relevant == expected


def test_stratified_sample_is_reproducible_and_bounded() -> None:
    posts = _real_posts()
    a = stratified_sample(posts, lambda p: (p.event, p.lang), 7, seed=3, min_stratum=10)
    b = stratified_sample(list(reversed(posts)), lambda p: (p.event, p.lang), 7, seed=3, min_stratum=10)
    assert [p.id for p in a] == [p.id for p in b]  # input order does not matter
    counts: dict[tuple[str, str], int] = {}
    for p in a:
        counts[(p.event, p.lang)] = counts.get((p.event, p.lang), 0) + 1
    sizes: dict[tuple[str, str], int] = {}
    for p in posts:
        sizes[(p.event, p.lang)] = sizes.get((p.event, p.lang), 0) + 1
    for key, n in counts.items():
        assert n == min(7, sizes[key]) and sizes[key] >= 10
    assert all(sizes[k] < 10 for k in sizes if k not in counts)
    c = stratified_sample(posts, lambda p: (p.event, p.lang), 7, seed=4, min_stratum=10)
    assert [p.id for p in c] != [p.id for p in a]


def test_without_drops_the_query_and_cuts_to_depth() -> None:
    ids = [f"t{i}" for i in range(12)]
    lst = RankedList("text", ids, [12.0 - i for i in range(12)])
    out = without(lst, "t3", 10)
    assert "t3" not in out.ids and len(out) == 10 and out.ids[:3] == ("t0", "t1", "t2")
    assert list(out.scores[3:5]) == [8.0, 7.0]
    assert without(lst, "absent", 5).ids == tuple(ids[:5])


def test_language_guesser_on_real_posts() -> None:
    guesser = LanguageGuesser()
    for event, lang in zip(EVENTS, ("en", "it"), strict=True):
        texts = [t.text for t in list(read_crisislex(T26 / event))[:300]]
        guesses = [guesser.guess(x) for x in texts]
        named = [g for g in guesses if g != UNDETERMINED]
        assert named.count(lang) / len(named) > 0.8, (event, lang)
    assert guesser.guess("") == UNDETERMINED


def test_metric_table_means_and_markdown() -> None:
    t = MetricTable()
    t.add("a", ["lang=en"], score_ranking(["1", "2"], frozenset({"1"}), 10))
    t.add("a", ["lang=it"], score_ranking(["2", "1"], frozenset({"1"}), 10))
    assert t.count("a") == 2 and t.count("a", "lang=en") == 1
    assert t.mean("a").average_precision == pytest.approx(0.75)
    assert t.mean("a", "lang=en").precision_at_k == pytest.approx(0.1)
    md = t.markdown()
    assert md.splitlines()[2].startswith("| a | 0.100 | 0.750 |")


# --- on the real database --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def evaluated(db_url: str) -> Evaluated:
    bench = _bench()
    cfg = bench.EvalConfig(collection="lfeval_test", events=EVENTS, per_stratum=6, min_stratum=5, depth=50,
                           fuse_depth=200)
    info = bench.ingest(db_url, T26, cfg.collection, events=EVENTS, limit_per_event=200)
    assert info["stored"] == 400 and info["embedded"] == 400
    posts = bench.load_posts(db_url, cfg.collection, LanguageGuesser())
    return bench, cfg, posts


def test_queries_never_find_themselves(db_url: str, evaluated: Evaluated) -> None:
    from catalog.db import connect

    bench, cfg, posts = evaluated
    result = bench.evaluate(db_url, cfg, posts)
    assert len(result.queries) >= 10
    langs = {q.post.lang for q in result.queries}
    assert {"en", "it"} <= langs
    with connect(db_url) as conn:
        for q in result.queries[:5]:
            lists = bench.modality_lists(conn, cfg.collection, q, cfg.depth)
            assert {lst.modality for lst in lists} >= {"text", "embedding", "time"}
            for lst in lists:
                assert q.post.id not in lst.ids and len(lst) <= cfg.depth


def test_tensor_fusion_beats_every_single_modality(db_url: str,
                                               evaluated: Evaluated) -> None:
    bench, cfg, posts = evaluated
    result = bench.evaluate(db_url, cfg, posts)
    table = result.table
    singles = [table.mean(m).average_precision for m in bench.MODALITIES]
    for name in cfg.fusers:
        m = table.mean(name)
        assert 0.0 <= m.precision_at_k <= 1.0 and 0.0 <= m.average_precision <= 1.0
    # The goal, on this subset too: the tensor fusion above every single modality.
    assert table.mean("tensor").average_precision > max(singles), (table.mean("tensor"), singles)
    # Every query is counted once per system and per its language group.
    n = len(result.queries)
    assert all(table.count(s) == n for s in (*bench.MODALITIES, *cfg.fusers))
    assert sum(table.count("tensor", f"lang={lang}") for lang in cfg.languages) == n
    report = bench.report(cfg, result, None, "test", (0.0,), (0.0,))
    assert "| tensor |" in report and "lang=it" in report
