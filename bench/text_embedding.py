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

    .venv/bin/python bench/text_embedding.py [--sample 1000] [--threads 1 2] [--map]
"""

from __future__ import annotations

import argparse
import hashlib
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
    INT8_MODEL_NAME,
    MODEL_NAME,
    STATIC_MODEL_NAME,
    TextEmbedder,
    _model,
)

T26 = ROOT.parent / "shared" / "data" / "crisislex" / "CrisisLexT26"
FLOOD_EVENTS = ("2013_Alberta_floods", "2013_Colorado_floods", "2013_Queensland_floods", "2013_Manila_floods",
                "2012_Philipinnes_floods", "2013_Sardinia_floods")
SHORT = {MODEL_NAME: "float", INT8_MODEL_NAME: "int8", STATIC_MODEL_NAME: "static"}


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
    key = hashlib.sha1("\x00".join(texts).encode()).hexdigest()[:16]
    # The float file is named as bench/late_fusion.py names it, so either script reuses the other's.
    batch = TextEmbedder(name).batch  # int8 vectors depend on the batch size
    path = cache / (f"minilm-{key}.npy" if name == MODEL_NAME else f"minilm-{SHORT[name]}-b{batch}-{key}.npy")
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


def retrieval(everything: list[Tweet], texts: list[str], cache: Path, depth: int = 100, k: int = 10,
              per_stratum: int = 25, seed: int = 2026) -> None:
    """Cosine agreement of the int8 vectors with the float ones, and the embedding modality's MAP."""
    index = {s: i for i, s in enumerate(texts)}
    by_model = {name: vectors(name, texts, cache) for name in (MODEL_NAME, INT8_MODEL_NAME, STATIC_MODEL_NAME)}
    cos = np.einsum("ij,ij->i", by_model[MODEL_NAME], by_model[INT8_MODEL_NAME])
    print(f"cosine(int8, float) over {len(texts):,} distinct texts: mean {cos.mean():.4f}, min {cos.min():.4f}, "
          f"p1 {np.percentile(cos, 1):.4f}, p50 {np.median(cos):.4f}")
    guess = LanguageGuesser()
    labelled = [LabelledPost(t.id, t.event or "", guess.guess(t.text),
                             t.properties.get("informativeness") == "Related and informative") for t in everything]
    candidates = [p for p in labelled if p.event in FLOOD_EVENTS and p.informative and p.lang in ("en", "it", "tl")
                  and p.lang != UNDETERMINED]
    queries = stratified_sample(candidates, lambda p: (p.event, p.lang), per_stratum, seed, min_stratum=20)
    relevance = RelevanceIndex(labelled)
    row = {p.id: n for n, p in enumerate(labelled)}
    ids = np.asarray([p.id for p in labelled])
    table = MetricTable()
    for name, vecs in by_model.items():
        post_vecs = vecs[[index[t.text] for t in everything]]
        for q in queries:
            scores = post_vecs @ post_vecs[row[q.id]]
            scores[row[q.id]] = -np.inf  # a query must not find itself
            top = np.argsort(-scores, kind="stable")[:depth]
            table.add(SHORT[name], (f"lang={q.lang}",), score_ranking(ids[top].tolist(), relevance.relevant(q),
                                                                      depth, k))
    print(f"embedding modality, exact cosine ranking, {len(queries)} queries (protocol of late_fusion_eval):")
    print(table.markdown(["all", "lang=en", "lang=it", "lang=tl"], k))


def main() -> None:
    """Token lengths, throughput, and (``--map``) agreement and retrieval."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--sample", type=int, default=1000, help="texts timed per embedder and thread count")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--map", action="store_true", help="embed every text with both embedders and score retrieval")
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/eofusion-bench-late-fusion/cache"))
    args = ap.parse_args()
    everything = posts()
    texts = sorted({t.text for t in everything})
    print(f"machine: nproc {os.cpu_count()}; {load_avg()}")
    token_lengths(texts)
    rng = np.random.default_rng(0)
    sample = [texts[i] for i in rng.choice(len(texts), min(args.sample, len(texts)), replace=False)]
    print("throughput (same process, real texts):")
    throughput(sample, args.threads)
    if args.map:
        retrieval(everything, texts, args.cache_dir)


if __name__ == "__main__":
    main()
