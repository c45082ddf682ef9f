"""Late-fusion retrieval evaluation on CrisisLexT26: P@10 and MAP per modality and per fuser.

Ingests every CrisisLexT26 event (about 28k real tweets) through the real ingest path (readers,
geoparser without any event prior, ``catalog.tweets.ingest_tweets``, then ``embed_collection``
with the project's text embedder) into a real database: the embedded cluster of a fresh data
directory, or ``EOFUSION_DATABASE_URL``. Then draws query posts from the six flood events with a
fixed seed, stratified by event and language (guessed from function words), among the posts
labelled informative. A query is a stored post, searched as ``late-fusion-search`` searches a post
id: its text (words and stored embedding), its time and its resolved place, each modality's top
``fuse_depth`` (1000; the query itself removed). A single modality is scored on its top ``depth``
(100); every fuser fuses the deep lists and returns ``depth``; for comparison the fusers also fuse
only the top ``depth`` of each list (what the process does with its default depth).

Relevant = same event AND "Related and informative". Metrics: P@10 and AP at ``depth`` (divided by
min(R, depth), see ``eofusion.evaluation.late_fusion``), averaged over queries, overall, per
language and per event. Writes ``bench/results_late_fusion_eval.md``.

    .venv/bin/python bench/late_fusion_eval.py [--per-stratum 25] [--depth 100] [--fuse-depth 1000]
        [--seed 2026] [--fusers "tensor rrf combsum combmnz"] [--keep-cluster] [--other-events]

``--other-events`` draws the queries from the twenty non-flood events instead (earthquakes, fires,
typhoons, ...): the development split on which fusion designs are compared before they are
reported on the flood queries.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from catalog import tweet_search  # noqa: E402
from catalog.db import connect, database_url, embedded_cluster  # noqa: E402
from catalog.migrate import migrate  # noqa: E402
from catalog.tweets import embed_collection, ingest_tweets  # noqa: E402
from eofusion.config import Settings  # noqa: E402
from eofusion.evaluation.language import UNDETERMINED, LanguageGuesser  # noqa: E402
from eofusion.evaluation.late_fusion import (  # noqa: E402
    LabelledPost,
    MetricTable,
    RelevanceIndex,
    score_ranking,
    stratified_sample,
    without,
)
from eofusion.fusion import Fuser, RankedList, fusers  # noqa: E402
from eofusion.social.embedding import DEFAULT_MODEL, EMBEDDER_ALIASES, embedder_names  # noqa: E402

T26 = ROOT.parent / "shared" / "data" / "crisislex" / "CrisisLexT26"
RESULTS = ROOT / "bench" / "results_late_fusion_eval.md"
FLOOD_EVENTS = ("2013_Alberta_floods", "2013_Colorado_floods", "2013_Queensland_floods", "2013_Manila_floods",
                "2012_Philipinnes_floods", "2013_Sardinia_floods")
INFORMATIVE = "Related and informative"
MODALITIES = ("text", "embedding", "time", "place")
FUSERS = ("tensor", "rrf", "combsum", "combmnz")
HNSW_MAX_EF_SEARCH = 1000  # pgvector's upper bound of hnsw.ef_search


@dataclass(frozen=True)
class EvalConfig:
    """Parameters of one evaluation run.

    Attributes:
        collection: Posts collection searched.
        events: Events the queries are drawn from.
        per_stratum: Queries drawn per (event, language) stratum.
        min_stratum: Strata with fewer informative posts are left out.
        seed: Sampling seed.
        depth: Results returned by every system (a modality's top, the fused top) and the AP depth.
        fuse_depth: Results per modality fed to the fusers (at least ``depth``): fusing deeper lists than
            are returned lets an item found by several modalities outrank one found by a single modality
            (TREC runs are fused at depth 1000, e.g. Cormack et al. 2009).
        k: Precision cut-off.
        languages: Languages reported (others and "und" are not drawn).
        fusers: Fusers evaluated, as ``name`` or ``name:param=value,...`` (see :func:`make_fuser`).
    """

    collection: str = "crisislex_eval"
    events: tuple[str, ...] = FLOOD_EVENTS
    per_stratum: int = 25
    min_stratum: int = 20
    seed: int = 2026
    depth: int = 100
    fuse_depth: int = 1000
    k: int = 10
    languages: tuple[str, ...] = ("en", "it", "tl")
    fusers: tuple[str, ...] = FUSERS


@dataclass
class StoredPost:
    """What a query needs from the database: the fields late-fusion-search reads for a post id."""

    post: LabelledPost
    text: str
    when: datetime | None
    lon: float | None
    lat: float | None
    embedding: np.ndarray | None


@dataclass
class EvalResult:
    """Metrics and bookkeeping of one run."""

    table: MetricTable
    queries: list[StoredPost]
    modality_available: dict[str, int] = field(default_factory=dict)
    seconds_per_query: float = 0.0


# --- ingest ----------------------------------------------------------------------------------------


def ingest(url: str, root: Path, collection: str, events: Sequence[str] | None = None,
           limit_per_event: int | None = None, embedder_name: str | None = None) -> dict[str, Any]:
    """Readers -> geoparser (no prior) -> tweets table -> embeddings, timing the two stages.

    Args:
        url: Database URL (migrated).
        root: CrisisLexT26 folder.
        collection: Target collection.
        events: Event folder names to read (default: all under ``root``).
        limit_per_event: Keep only the first N tweets of every event (tests).
        embedder_name: Registered text embedder (default: the project's default for new collections).

    Returns:
        Counts and timings.
    """
    from eofusion.geoparse.parser import PlaceParser
    from eofusion.geoparse.resolve import Resolver, geoparse_tweets
    from eofusion.readers.tweets import IngestReport, Tweet, read_crisislex
    from eofusion.social.embedding import TextEmbedder

    embedder_name = embedder_name or DEFAULT_MODEL
    report = IngestReport()
    folders = [root / e for e in events] if events else [root]
    tweets: list[Tweet] = []
    for folder in folders:
        got = list(read_crisislex(folder, report=report))
        tweets += got[:limit_per_event] if limit_per_event else got
    t0 = time.perf_counter()
    parsed = geoparse_tweets(tweets, PlaceParser(), Resolver())
    stored = ingest_tweets(url, parsed, collection)
    t1 = time.perf_counter()
    embedder = TextEmbedder(embedder_name)
    embedded = embed_collection(url, collection, embedder)
    t2 = time.perf_counter()
    return {"read": report.summary(), "stored": stored.stored, "located": stored.located,
            "geoparse_store_s": t1 - t0, "embedded": embedded, "embed_s": t2 - t1, "embedder": embedder.name}


def collection_size(url: str, collection: str) -> tuple[int, int]:
    """(posts, posts with an embedding) of a collection."""
    with connect(url) as conn:
        row = conn.execute("SELECT count(*), count(embedding) FROM eofusion.tweets WHERE collection = %s",
                           (collection,)).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


# --- loading the labelled posts --------------------------------------------------------------------


def load_posts(url: str, collection: str, guesser: LanguageGuesser) -> dict[str, StoredPost]:
    """Every post of the collection with its labels, time, place and embedding."""
    out: dict[str, StoredPost] = {}
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT id, event, properties->>'informativeness', text, datetime, ST_X(geometry), ST_Y(geometry), "
            "embedding::text FROM eofusion.tweets WHERE collection = %s", (collection,)).fetchall()
    for tid, event, label, text, when, lon, lat, emb in rows:
        post = LabelledPost(id=tid, event=event or "", lang=guesser.guess(text), informative=label == INFORMATIVE)
        vec = np.asarray(json.loads(emb), dtype=np.float32) if emb is not None else None
        out[tid] = StoredPost(post, text, when, lon, lat, vec)
    return out


def make_fuser(spec: str) -> Fuser:
    """A registered fuser from ``name`` or ``name:param=value,...`` (values are JSON or plain strings)."""
    name, _, params = spec.partition(":")
    kwargs: dict[str, Any] = {}
    for part in filter(None, params.split(",")):
        key, _, value = part.partition("=")
        try:
            kwargs[key] = json.loads(value)
        except ValueError:
            kwargs[key] = value
    return fusers.create(name, **kwargs)


# --- one query -------------------------------------------------------------------------------------


def modality_lists(conn: Any, collection: str, query: StoredPost, depth: int) -> list[RankedList]:
    """The per-modality lists late-fusion-search builds for a post id, without the post itself.

    Each modality is asked for ``depth + 1`` results so that ``depth`` remain once the query is
    dropped. A modality the query lacks (no place resolved) gives no list.
    """
    n = depth + 1
    lists = [tweet_search.text(conn, collection, query.text, n)]
    if query.embedding is not None:
        # hnsw.ef_search cannot exceed 1000, and the search sets it to at least n.
        lists.append(tweet_search.embedding(conn, collection, query.embedding, min(n, HNSW_MAX_EF_SEARCH)))
    if query.when is not None:
        lists.append(tweet_search.time(conn, collection, query.when, n))
    if query.lon is not None and query.lat is not None:
        lists.append(tweet_search.place(conn, collection, query.lon, query.lat, n))
    return [without(lst, query.post.id, depth) for lst in lists]


def evaluate(url: str, cfg: EvalConfig, posts: dict[str, StoredPost]) -> EvalResult:
    """Draw the queries, run every modality and fuser, score them.

    Args:
        url: Database URL.
        cfg: Run parameters.
        posts: The collection's labelled posts (:func:`load_posts`).

    Returns:
        The metric table and the queries.
    """
    candidates = [p.post for p in posts.values() if p.post.event in cfg.events and p.post.informative
                  and p.post.lang in cfg.languages and p.post.lang != UNDETERMINED]
    sample = stratified_sample(candidates, lambda p: (p.event, p.lang), cfg.per_stratum, cfg.seed,
                               cfg.min_stratum)
    relevance = RelevanceIndex(p.post for p in posts.values())
    table = MetricTable()
    available = dict.fromkeys(MODALITIES, 0)
    queries = [posts[p.id] for p in sample]
    instances = {spec: make_fuser(spec) for spec in cfg.fusers}
    deepest = max(cfg.fuse_depth, cfg.depth)
    # The main rows fuse the deep lists; the comparison rows fuse only the top `depth` of each list.
    fuse_depths = [(deepest, "")] + ([(cfg.depth, f" (fusing top {cfg.depth})")] if deepest > cfg.depth else [])
    started = time.perf_counter()
    with connect(url) as conn:
        for q in queries:
            rel = relevance.relevant(q.post)
            groups = (f"lang={q.post.lang}", f"event={q.post.event}")
            lists = [lst for lst in modality_lists(conn, cfg.collection, q, deepest) if len(lst)]
            by_name = {lst.modality: lst for lst in lists}
            for m in MODALITIES:
                ranked = by_name[m].ids[:cfg.depth] if m in by_name else ()
                available[m] += m in by_name
                table.add(m, groups, score_ranking(ranked, rel, cfg.depth, cfg.k))
            for depth, label in fuse_depths:
                cut = [RankedList(lst.modality, lst.ids[:depth], lst.scores[:depth]) for lst in lists]
                for name, fuser in instances.items():
                    fused = fuser(cut, cfg.depth).ids if cut else ()
                    table.add(name + label, groups, score_ranking(fused, rel, cfg.depth, cfg.k))
    per_query = (time.perf_counter() - started) / max(len(queries), 1)
    return EvalResult(table, queries, available, per_query)


# --- report ----------------------------------------------------------------------------------------


def best_single(table: MetricTable, group: str = "all") -> tuple[str, float]:
    """The single modality with the highest MAP in a group."""
    scores = {m: table.mean(m, group).average_precision for m in MODALITIES if table.count(m, group)}
    name = max(scores, key=lambda m: scores[m])
    return name, scores[name]


def report(cfg: EvalConfig, result: EvalResult, ingest_info: dict[str, Any] | None, command: str,
           load_before: tuple[float, ...], load_after: tuple[float, ...]) -> str:
    """The Markdown report (also printed)."""
    t = result.table
    langs = [f"lang={lang}" for lang in cfg.languages if t.count(MODALITIES[0], f"lang={lang}")]
    events = [f"event={e}" for e in cfg.events if t.count(MODALITIES[0], f"event={e}")]
    lines = ["# Late-fusion retrieval evaluation (CrisisLexT26)", "",
             f"Command: `{command}`", "",
             f"Machine: nproc={os.cpu_count()}, {platform.machine()}, Python {platform.python_version()}; "
             f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after.", ""]
    if ingest_info:
        lines += [f"Ingest (real path, no geoparsing prior): {ingest_info['stored']:,} posts, "
                  f"{ingest_info['located']:,} located; readers+geoparse+store {ingest_info['geoparse_store_s']:.0f} s "
                  f"({ingest_info['stored'] / ingest_info['geoparse_store_s']:.0f} posts/s); embedding "
                  f"({ingest_info['embedder']}) {ingest_info['embed_s']:.0f} s "
                  f"({ingest_info['embedded'] / max(ingest_info['embed_s'], 1e-9):.0f} posts/s). "
                  f"Readers: {ingest_info['read']}.", ""]
    else:
        lines += [f"Ingest: the collection `{cfg.collection}` was already stored and embedded (reused).", ""]
    n = len(result.queries)
    split = ("the flood events" if set(cfg.events) == set(FLOOD_EVENTS)
             else f"{len(cfg.events)} events other than the floods (the development split)")
    lines += [f"Protocol: {n} query posts drawn (seed {cfg.seed}) from the informative posts of {split}, "
              f"up to {cfg.per_stratum} per (event, language) stratum, strata with fewer than {cfg.min_stratum} "
              "candidates left out; language guessed from function words (`eofusion.evaluation.language`). "
              "A query searches every modality with its own text, stored embedding, time and resolved place "
              f"(top {max(cfg.fuse_depth, cfg.depth)} each, the query itself removed); a single modality is scored "
              f"on its top {cfg.depth}, a fuser fuses the top-{max(cfg.fuse_depth, cfg.depth)} lists and returns "
              f"{cfg.depth}. "
              "Relevant = other posts of the same event labelled \"Related and informative\". "
              f"P@{cfg.k} and MAP at depth {cfg.depth} (AP divided by min(R, {cfg.depth})). A modality the query "
              "lacks scores 0 for that query. Queries with a list per modality: "
              + ", ".join(f"{m} {c}/{n}" for m, c in result.modality_available.items())
              + f". Search + fusion: {result.seconds_per_query * 1000:.0f} ms per query (all modalities and fusers).",
              "", "## Overall and per language", "", t.markdown(["all", *langs], cfg.k), "",
              "## Per event", "", t.markdown(events, cfg.k), ""]
    lines += ["## Fused versus the best single modality (MAP)", "",
              "| group | best single | its MAP | " + " | ".join(cfg.fusers) + " |",
              "|---|---|---:|" + "---:|" * len(cfg.fusers)]
    for g in ["all", *langs]:
        name, best = best_single(t, g)
        cells = [f"{t.mean(f, g).average_precision:.3f} ({t.mean(f, g).average_precision / best:.2f}x)"
                 for f in cfg.fusers]
        lines.append(f"| {g} | {name} | {best:.3f} | " + " | ".join(cells) + " |")
    lines.append("")
    name, _ = best_single(t, "all")
    rng = np.random.default_rng(0)
    for f in cfg.fusers:
        diff = t.ap_vector(f) - t.ap_vector(name)
        # Paired bootstrap over queries: how much the mean difference depends on the draw of queries.
        boot = diff[rng.integers(0, diff.shape[0], (2000, diff.shape[0]))].mean(axis=1)
        lo, hi = np.percentile(boot, [2.5, 97.5])
        lines.append(f"- {f} - {name}: mean AP difference {diff.mean():+.3f} (95% paired bootstrap interval "
                     f"{lo:+.3f} to {hi:+.3f}), fused better on {int((diff > 0).sum())} queries, worse on "
                     f"{int((diff < 0).sum())}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Set up the database, ingest if needed, evaluate, print and write the report."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--root", type=Path, default=T26)
    ap.add_argument("--per-stratum", type=int, default=EvalConfig.per_stratum)
    ap.add_argument("--depth", type=int, default=EvalConfig.depth)
    ap.add_argument("--fuse-depth", type=int, default=EvalConfig.fuse_depth)
    ap.add_argument("--fusers", default=" ".join(FUSERS), help="Fuser specs separated by spaces")
    ap.add_argument("--seed", type=int, default=EvalConfig.seed)
    ap.add_argument("--collection", default=EvalConfig.collection)
    ap.add_argument("--keep-cluster", action="store_true", help="Leave the embedded cluster and its data in place")
    ap.add_argument("--output", type=Path, default=RESULTS)
    ap.add_argument("--other-events", action="store_true",
                    help="draw the queries from the non-flood events (the development split)")
    ap.add_argument("--embedder", default=DEFAULT_MODEL, choices=[*embedder_names(), *EMBEDDER_ALIASES],
                    help="text embedder of the ingested collection (a full name or a short one: "
                    + ", ".join(EMBEDDER_ALIASES) + ")")
    args = ap.parse_args()
    cfg = EvalConfig(collection=args.collection, per_stratum=args.per_stratum, depth=args.depth,
                     fuse_depth=args.fuse_depth, seed=args.seed, fusers=tuple(args.fusers.split()))
    load_before = os.getloadavg()
    tmp: Path | None = None
    if os.environ.get("EOFUSION_DATABASE_URL"):
        settings = Settings.from_env()
    else:
        tmp = Path(tempfile.mkdtemp(prefix="bench-late-fusion-"))
        tmp.chmod(0o755)  # the cluster may run as the postgres user
        settings = Settings(data_dir=tmp)
    url = database_url(settings)
    try:
        migrate(url)
        info = None
        posts_n, embedded_n = collection_size(url, cfg.collection)
        if posts_n == 0 or embedded_n < posts_n:
            info = ingest(url, args.root, cfg.collection,
                          embedder_name=EMBEDDER_ALIASES.get(args.embedder, args.embedder))
            print(json.dumps(info, indent=1))
        posts = load_posts(url, cfg.collection, LanguageGuesser())
        if args.other_events:
            others = tuple(sorted({p.post.event for p in posts.values()} - set(FLOOD_EVENTS)))
            cfg = dataclasses.replace(cfg, events=others)
        result = evaluate(url, cfg, posts)
        command = ".venv/bin/python " + " ".join([str(Path(sys.argv[0]).relative_to(ROOT))
                                                  if Path(sys.argv[0]).is_absolute() else sys.argv[0],
                                                  *sys.argv[1:]])
        text = report(cfg, result, info, command, load_before, os.getloadavg())
        print(text)
        args.output.write_text(text)
    finally:
        if tmp is not None and not args.keep_cluster:
            embedded_cluster(settings).stop()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
