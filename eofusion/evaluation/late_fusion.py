"""Query-by-example evaluation of per-modality and fused post rankings (pure, no I/O).

The protocol of the CrisisLexT26 evaluation (``bench/late_fusion_eval.py``): a query is a stored
post; its relevant posts are the *other* posts of the same event that are labelled informative.
Each system (a single modality or a fuser) returns a ranking cut at a fixed depth; we report
precision@10 and average precision at that depth, averaged over queries, overall and per group
(language, event).

AP at depth D divides by ``min(R, D)`` (R = number of relevant posts), not by R: with hundreds of
relevant posts per event and D = 100, dividing by R would cap every system far below 1 and
measure recall at D more than ranking quality. A perfect ranking scores 1 either way.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from eofusion.evaluation.retrieval import average_precision, precision_at_k
from eofusion.fusion.base import RankedList

__all__ = [
    "LabelledPost",
    "MetricTable",
    "QueryScore",
    "RelevanceIndex",
    "score_ranking",
    "stratified_sample",
    "without",
]


@dataclass(frozen=True)
class LabelledPost:
    """A post with the labels the protocol needs.

    Attributes:
        id: Post id.
        event: Event (collection folder) the post belongs to.
        lang: Language code of the text (or ``"und"``).
        informative: Whether the crowd labelled it "Related and informative".
    """

    id: str
    event: str
    lang: str
    informative: bool


class RelevanceIndex:
    """Relevant sets: the informative posts of the query's event, the query itself excluded.

    Args:
        posts: Every post of the searched collection, labelled.
    """

    def __init__(self, posts: Iterable[LabelledPost]) -> None:
        """Index the informative posts by event."""
        by_event: dict[str, set[str]] = defaultdict(set)
        for p in posts:
            if p.informative:
                by_event[p.event].add(p.id)
        self._by_event = {e: frozenset(ids) for e, ids in by_event.items()}

    def relevant(self, query: LabelledPost) -> frozenset[str]:
        """Ids relevant to ``query``: same event and informative, never the query's own id.

        Args:
            query: The query post.

        Returns:
            The relevant ids.
        """
        return self._by_event.get(query.event, frozenset()) - {query.id}


def stratified_sample(
    posts: Sequence[LabelledPost],
    key: Callable[[LabelledPost], Hashable],
    per_stratum: int,
    seed: int,
    min_stratum: int = 1,
) -> list[LabelledPost]:
    """Draw up to ``per_stratum`` posts from every stratum, reproducibly.

    Posts are sorted by id inside each stratum before drawing, so the sample depends only on the
    set of posts, the seed and the sizes, not on the order the posts came in.

    Args:
        posts: Candidate query posts.
        key: Stratum of a post, e.g. ``lambda p: (p.event, p.lang)``.
        per_stratum: Posts drawn from each stratum (all of a smaller stratum).
        seed: Random seed.
        min_stratum: Strata with fewer candidates are left out (too small to report on, and
            mostly mislabelled strays).

    Returns:
        The sample, ordered by stratum then id.
    """
    strata: dict[Hashable, list[LabelledPost]] = defaultdict(list)
    for p in posts:
        strata[key(p)].append(p)
    rng = random.Random(seed)
    out: list[LabelledPost] = []
    for k in sorted(strata, key=repr):
        members = sorted(strata[k], key=lambda p: p.id)
        if len(members) < min_stratum:
            continue
        picked = rng.sample(members, min(per_stratum, len(members)))
        out.extend(sorted(picked, key=lambda p: p.id))
    return out


def without(ranked: RankedList, item_id: str, depth: int) -> RankedList:
    """The list without ``item_id``, cut to ``depth`` items (a query must not find itself).

    Args:
        ranked: A modality's list (fetched one deeper than needed).
        item_id: Id to drop.
        depth: Length to keep.

    Returns:
        A new list of the same modality.
    """
    keep = [i for i, x in enumerate(ranked.ids) if x != item_id][:depth]
    return RankedList(ranked.modality, [ranked.ids[i] for i in keep], ranked.scores[keep])


@dataclass(frozen=True)
class QueryScore:
    """Metrics of one ranking for one query.

    Attributes:
        precision_at_k: Precision at the cut-off ``k``.
        average_precision: AP at the evaluation depth, normalised by ``min(R, depth)``.
    """

    precision_at_k: float
    average_precision: float


def score_ranking(ranked: Sequence[str], relevant: frozenset[str], depth: int, k: int = 10) -> QueryScore:
    """P@k and AP@depth of one ranking.

    Args:
        ranked: Ids, best first (only the first ``depth`` count).
        relevant: Relevant ids.
        depth: Evaluation depth D; AP is divided by ``min(len(relevant), D)``.
        k: Precision cut-off.

    Returns:
        The scores; both 0 when nothing is relevant.
    """
    if depth < 1:
        raise ValueError(f"depth must be positive, got {depth}")
    top = list(ranked[:depth])
    n_rel = min(len(relevant), depth)
    ap = average_precision(top, relevant, n_relevant=n_rel) if n_rel else 0.0
    return QueryScore(precision_at_k(top, relevant, k), ap)


@dataclass
class MetricTable:
    """Per-query scores of several systems, averaged per group.

    Every query is recorded under the group ``"all"`` and the groups it belongs to.
    """

    scores: dict[tuple[str, str], list[QueryScore]] = field(default_factory=lambda: defaultdict(list))
    systems: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=lambda: ["all"])

    def add(self, system: str, groups: Iterable[str], score: QueryScore) -> None:
        """Record one query's score for ``system`` in ``"all"`` and in ``groups``."""
        if system not in self.systems:
            self.systems.append(system)
        for g in ("all", *groups):
            if g not in self.groups:
                self.groups.append(g)
            self.scores[(system, g)].append(score)

    def count(self, system: str, group: str = "all") -> int:
        """Queries recorded for a system in a group."""
        return len(self.scores.get((system, group), []))

    def mean(self, system: str, group: str = "all") -> QueryScore:
        """Mean P@k and MAP of a system in a group (NaN when the group has no query)."""
        rows = self.scores.get((system, group), [])
        if not rows:
            return QueryScore(float("nan"), float("nan"))
        return QueryScore(float(np.mean([r.precision_at_k for r in rows])),
                          float(np.mean([r.average_precision for r in rows])))

    def ap_vector(self, system: str, group: str = "all") -> np.ndarray:
        """Per-query AP of a system in a group, in recording order (for paired comparisons)."""
        return np.array([r.average_precision for r in self.scores.get((system, group), [])], dtype=np.float64)

    def markdown(self, groups: Sequence[str] | None = None, k: int = 10) -> str:
        """A Markdown table: one row per system, P@k and MAP per group (query counts in the header).

        Args:
            groups: Groups to show, in order (default: all recorded).
            k: The precision cut-off, for the header.

        Returns:
            The table.
        """
        shown = list(groups) if groups is not None else self.groups
        ref = self.systems[0] if self.systems else ""
        head = "| system | " + " | ".join(
            f"{g} (n={self.count(ref, g)}) P@{k} | {g} MAP" for g in shown) + " |"
        sep = "|---|" + "---:|---:|" * len(shown)
        lines = [head, sep]
        for s in self.systems:
            cells = []
            for g in shown:
                m = self.mean(s, g)
                cells += [f"{m.precision_at_k:.3f}", f"{m.average_precision:.3f}"]
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        return "\n".join(lines)
