"""Property tests of the rank fusers (eofusion.fusion)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eofusion.fusion import (
    Candidates,
    FusedRanking,
    Fusers,
    RankedList,
    ScoreFuser,
    UnknownFuserError,
    competition_ranks,
    fusers,
)
from eofusion.fusion.tensor import anti_diagonal_position

FUSER_NAMES = ["combmnz", "combsum", "rrf", "tensor"]
UNIVERSE = [f"item{i:02d}" for i in range(30)]
MODALITIES = ["visual", "concepts", "spatial", "temporal", "social"]

# Local settings (not a global profile, which would leak into other test modules).
PROPERTY = settings(deadline=None, max_examples=60, database=None)


def rank(rl: RankedList, item: str) -> int:
    """Naive competition rank of ``item`` in ``rl``: one plus the number of strictly better scores."""
    score = rl.scores[rl.ids.index(item)]
    return 1 + int(np.sum(rl.scores > score))


def fuse(name: str, lists: Sequence[RankedList], k: int | None = None) -> FusedRanking:
    """Fuse with a fresh default-parameter fuser, returning every candidate by default."""
    total = sum(len(rl) for rl in lists)
    return fusers.create(name)(lists, k if k is not None else max(total, 1))


@st.composite
def ranked_list(draw: st.DrawFn, modality: str, min_size: int = 0) -> RankedList:
    ids = draw(st.lists(st.sampled_from(UNIVERSE), min_size=min_size, max_size=15, unique=True))
    # Small integer scores produce ties, which the fusers must handle deterministically.
    raw = draw(st.lists(st.integers(0, 5), min_size=len(ids), max_size=len(ids)))
    return RankedList(modality, ids, np.sort(np.asarray(raw, dtype=float))[::-1])


@st.composite
def ranked_lists(draw: st.DrawFn, min_lists: int = 1, min_size: int = 0) -> list[RankedList]:
    n = draw(st.integers(min_lists, len(MODALITIES)))
    return [draw(ranked_list(m, min_size)) for m in MODALITIES[:n]]


# --- the registry -------------------------------------------------------------------------


def test_builtin_fusers_registered() -> None:
    assert fusers.names() == FUSER_NAMES
    for meta in fusers.metadata():
        assert meta.name in FUSER_NAMES and meta.title
    assert "rank_constant" in fusers.get("rrf").metadata().parameters


def test_unknown_fuser_name_lists_known_ones() -> None:
    with pytest.raises(UnknownFuserError) as err:
        fusers.get("borda")
    message = str(err.value)
    assert "borda" in message
    for name in FUSER_NAMES:
        assert name in message
    # It is a KeyError, so mapping-style callers can catch it generically.
    with pytest.raises(KeyError):
        fusers.create("nope")
    with pytest.raises(KeyError):
        fusers["nope"]


def test_parameters_are_validated() -> None:
    assert fusers.create("rrf", rank_constant=10).rank_constant == 10  # type: ignore[attr-defined]
    with pytest.raises(pydantic.ValidationError):
        fusers.create("rrf", rank_constant=-1)
    with pytest.raises(pydantic.ValidationError):
        fusers.create("tensor", depth=3)  # unknown parameter


def test_register_plugin_in_private_registry() -> None:
    registry = Fusers()

    @registry.register
    class ReverseId(ScoreFuser):
        name: ClassVar[str] = "reverse-id"
        title: ClassVar[str] = "Test plug-in"

        def score(self, candidates: Candidates) -> np.ndarray:
            return -np.arange(candidates.ids.shape[0], dtype=float)

    assert "reverse-id" in registry and len(registry) == 1
    out = registry.create("reverse-id")([RankedList.from_ids("a", ["y", "x"])], k=2)
    assert out.ids == ("x", "y")
    with pytest.raises(ValueError, match="already registered"):
        registry.register(ReverseId)
    registry.register(ReverseId, overwrite=True)
    with pytest.raises(TypeError):
        registry.register(ScoreFuser)  # abstract
    assert "reverse-id" not in fusers  # the global registry is untouched


# --- input validation ---------------------------------------------------------------------


def test_ranked_list_validation() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        RankedList("v", ["a", "a"], [2.0, 1.0])
    with pytest.raises(ValueError, match="scores"):
        RankedList("v", ["a", "b"], [1.0])
    with pytest.raises(ValueError, match="non-increasing"):
        RankedList("v", ["a", "b"], [1.0, 2.0])
    with pytest.raises(TypeError):
        RankedList("v", "ab", [2.0, 1.0])
    with pytest.raises(ValueError, match="duplicate modality"):
        fuse("rrf", [RankedList.from_ids("v", ["a"]), RankedList.from_ids("v", ["b"])])
    with pytest.raises(ValueError, match="k must be"):
        fusers.create("tensor")([RankedList.from_ids("v", ["a"])], k=0)


@pytest.mark.parametrize("name", FUSER_NAMES)
def test_no_lists_or_empty_lists(name: str) -> None:
    assert len(fuse(name, [])) == 0
    out = fuse(name, [RankedList.from_ids("v", []), RankedList.from_ids("s", [])])
    assert len(out) == 0 and out.modalities == ("s", "v")


# --- properties common to every fuser -----------------------------------------------------


@pytest.mark.parametrize("name", FUSER_NAMES)
@PROPERTY
@given(lists=ranked_lists(), data=st.data())
def test_unanimous_first_item_is_first(name: str, lists: list[RankedList], data: st.DataObject) -> None:
    top = "TOP"
    boosted = [
        RankedList(rl.modality, [top, *rl.ids], np.concatenate([[rl.scores.max(initial=0) + 1], rl.scores]))
        for rl in lists
    ]
    out = fuse(name, boosted, k=data.draw(st.integers(1, 5)))
    assert out.ids[0] == top
    assert out.scores[0] > (out.scores[1] if len(out) > 1 else -np.inf)


@pytest.mark.parametrize("name", FUSER_NAMES)
@PROPERTY
@given(single=ranked_list("visual"))
def test_single_list_is_returned_unchanged(name: str, single: RankedList) -> None:
    out = fuse(name, [single])
    assert out.ids == tuple(single.ids)
    assert out.rank_matrix[:, 0].tolist() == [rank(single, i) for i in single.ids]


@pytest.mark.parametrize("name", FUSER_NAMES)
@PROPERTY
@given(lists=ranked_lists(), seed=st.integers(0, 2**32 - 1), k=st.integers(1, 40))
def test_list_order_does_not_matter(name: str, lists: list[RankedList], seed: int, k: int) -> None:
    shuffled = list(lists)
    random.Random(seed).shuffle(shuffled)
    a, b = fuse(name, lists, k), fuse(name, shuffled, k)
    assert a.ids == b.ids
    assert np.array_equal(a.scores, b.scores)
    assert np.array_equal(a.rank_matrix, b.rank_matrix) and a.modalities == b.modalities


@pytest.mark.parametrize("name", FUSER_NAMES)
@PROPERTY
@given(lists=ranked_lists(), k=st.integers(1, 40))
def test_ranks_reported_and_output_well_formed(name: str, lists: list[RankedList], k: int) -> None:
    out = fuse(name, lists, k)
    union = {i for rl in lists for i in rl.ids}
    assert len(out) == min(k, len(union))
    assert len(set(out.ids)) == len(out) and set(out.ids) <= union
    assert np.all(np.diff(out.scores) <= 0)  # best first
    for item, ranks in zip(out.ids, out.ranks, strict=True):
        expected = {rl.modality: rank(rl, item) for rl in lists if item in rl.ids}
        assert ranks == expected
        for rl in lists:
            assert out.rank_of(item, rl.modality) == (rank(rl, item) if item in rl.ids else None)
    # Truncation keeps a prefix of the full ranking.
    full = fuse(name, lists)
    assert full.ids[: len(out)] == out.ids


@pytest.mark.parametrize("name", FUSER_NAMES)
@PROPERTY
@given(data=st.data())
def test_more_lists_at_equal_rank_beats_fewer(name: str, data: st.DataObject) -> None:
    n_lists = data.draw(st.integers(3, 5))
    a_count = data.draw(st.integers(2, n_lists - 1))
    b_count = data.draw(st.integers(1, min(a_count - 1, n_lists - a_count)))
    length = data.draw(st.integers(2, 10))
    # Not the last rank: min-max normalisation maps the last item to 0, i.e. to "absent".
    rank = data.draw(st.integers(1, length - 1))
    modalities = data.draw(st.permutations(MODALITIES[:n_lists]))
    a_lists, b_lists = set(modalities[:a_count]), set(modalities[a_count : a_count + b_count])
    fillers = [f"f{i:02d}" for i in range(40)]
    lists = []
    for m in MODALITIES[:n_lists]:
        others = data.draw(st.permutations(fillers))[: length - 1]
        ids = list(others)
        if m in a_lists:
            ids.insert(rank - 1, "A")
        elif m in b_lists:
            ids.insert(rank - 1, "B")
        else:
            ids.append(data.draw(st.sampled_from([f for f in fillers if f not in ids])))
        # Same length and score scale in every list, so equal rank means equal normalised score.
        lists.append(RankedList(m, ids, np.arange(length, 0, -1, dtype=float)))
    out = fuse(name, lists)
    assert out.ids.index("A") < out.ids.index("B")


@PROPERTY
@given(lists=ranked_lists(min_lists=2))
def test_rrf_rank_dominance(lists: list[RankedList]) -> None:
    """RRF: if a's sorted rank vector is nowhere worse and somewhere better than b's, a is ahead."""
    out = fuse("rrf", lists)
    absent = max(len(rl) for rl in lists) + 1
    vectors = {
        i: sorted(np.where(row > 0, row, absent).tolist()) for i, row in zip(out.ids, out.rank_matrix, strict=True)
    }
    position = {i: p for p, i in enumerate(out.ids)}
    for a, b in itertools.permutations(out.ids, 2):
        va, vb = vectors[a], vectors[b]
        if all(x <= y for x, y in zip(va, vb, strict=True)) and va != vb:
            assert position[a] < position[b]


@pytest.mark.parametrize("name", ["tensor", "rrf"])
@PROPERTY
@given(lists=ranked_lists(min_lists=2))
def test_modality_wise_dominance(name: str, lists: list[RankedList]) -> None:
    """Found by every modality that found b, and ranked no worse by each, a is not behind b."""
    out = fuse(name, lists)
    position = {i: p for p, i in enumerate(out.ids)}
    rows = dict(zip(out.ids, out.rank_matrix.tolist(), strict=True))
    for a, b in itertools.permutations(out.ids, 2):
        ra, rb = rows[a], rows[b]
        pairs = list(zip(ra, rb, strict=True))
        if all(y == 0 or 0 < x <= y for x, y in pairs) and ra != rb:
            assert position[a] < position[b]


@pytest.mark.parametrize("name", FUSER_NAMES)
@PROPERTY
@given(lists=ranked_lists(), seed=st.integers(0, 2**32 - 1))
def test_order_within_tied_scores_carries_no_vote(name: str, lists: list[RankedList], seed: int) -> None:
    """Reordering items of equal score inside a list changes no fused score and no reported rank."""
    rng = random.Random(seed)
    reordered = []
    for rl in lists:
        ids: list[str] = []
        for _, group in itertools.groupby(zip(rl.ids, rl.scores, strict=True), key=lambda pair: pair[1]):
            tied = [i for i, _ in group]
            rng.shuffle(tied)
            ids.extend(tied)
        reordered.append(RankedList(rl.modality, ids, rl.scores))
    a, b = fuse(name, lists), fuse(name, reordered)
    assert dict(zip(a.ids, a.scores.tolist(), strict=True)) == dict(zip(b.ids, b.scores.tolist(), strict=True))
    assert dict(zip(a.ids, a.ranks, strict=True)) == dict(zip(b.ids, b.ranks, strict=True))


def test_tied_scores_share_the_best_rank() -> None:
    assert competition_ranks(np.array([5.0, 5.0, 3.0, 3.0, 3.0, 1.0])).tolist() == [1, 1, 3, 3, 3, 6]
    assert competition_ranks(np.empty(0)).tolist() == []
    # Every post 0 km from the query place shares place rank 1; the tensor then orders them by
    # the other modality, whatever order the place search listed them in.
    place = RankedList("place", ["p3", "p2", "p1", "far"], [0.0, 0.0, 0.0, -40.0])
    time = RankedList.from_ids("time", ["p1", "p2", "p3", "far"])
    out = fuse("tensor", [place, time])
    assert out.ids == ("p1", "p2", "p3", "far")
    assert [r["place"] for r in out.ranks] == [1, 1, 1, 4]


# --- definitions checked against naive re-implementations --------------------------------


@PROPERTY
@given(lists=ranked_lists(), c=st.floats(0, 100))
def test_rrf_matches_definition(lists: list[RankedList], c: float) -> None:
    out = fusers.create("rrf", rank_constant=c)(lists, 1000)
    for item, score in zip(out.ids, out.scores, strict=True):
        expected = sum(1.0 / (c + rank(rl, item)) for rl in lists if item in rl.ids)
        assert score == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name", ["combsum", "combmnz"])
@PROPERTY
@given(lists=ranked_lists())
def test_combsum_combmnz_match_definition(name: str, lists: list[RankedList]) -> None:
    out = fuse(name, lists)
    for item, score in zip(out.ids, out.scores, strict=True):
        total, hits = 0.0, 0
        for rl in lists:
            if item in rl.ids:
                s = rl.scores[list(rl.ids).index(item)]
                lo, hi = rl.scores.min(), rl.scores.max()
                total += 1.0 if hi == lo else (s - lo) / (hi - lo)
                hits += 1
        assert score == pytest.approx(total * (hits if name == "combmnz" else 1), abs=1e-12)


@PROPERTY
@given(lists=ranked_lists(min_lists=2), c=st.floats(0, 100))
def test_tensor_matches_definition(lists: list[RankedList], c: float) -> None:
    """Each pair of lists is a surface of the items both ranked, walked by rank sum then best rank;
    an item scores the sum of 1 / (c + its surface rank) over the surfaces it lies on."""
    out = fusers.create("tensor", rank_constant=c)(lists, 1000)
    expected = dict.fromkeys(out.ids, 0.0)
    for a, b in itertools.combinations(lists, 2):
        cells = {i: (rank(a, i) + rank(b, i), min(rank(a, i), rank(b, i))) for i in a.ids if i in b.ids}
        for item, cell in cells.items():
            expected[item] += 1.0 / (c + 1 + sum(other < cell for other in cells.values()))
    for item, score in zip(out.ids, out.scores, strict=True):
        assert score == pytest.approx(expected[item], rel=1e-12, abs=1e-15)


def test_anti_diagonal_position_matches_a_walk_of_the_surface() -> None:
    # Walk a 12 x 12 surface cell by cell: anti-diagonals in order, within one by min rank; the
    # two mirror cells of a pair are visited "together" and share the first of their positions.
    size = 12
    cells = sorted(
        ((p, q) for p in range(1, size + 1) for q in range(1, size + 1)),
        key=lambda c: (c[0] + c[1], min(c)),
    )
    walked: dict[tuple[int, int], int] = {}
    for step, (p, q) in enumerate(cells, start=1):
        walked[(p, q)] = walked.get((q, p), step)
    for (p, q), expected in walked.items():
        if p + q <= size + 1:  # beyond that the finite grid truncates the anti-diagonals
            assert anti_diagonal_position(p, q) == expected
    with pytest.raises(ValueError):
        anti_diagonal_position(0, 1)


def test_tensor_handles_unequal_lengths_and_missing_modality() -> None:
    visual = RankedList.from_ids("visual", [f"v{i}" for i in range(20)] + ["shared"])
    social = RankedList.from_ids("social", ["shared", "s1"])
    out = fuse("tensor", [visual, social])
    # shared: (21, 1) on the only surface, anti-diagonal 22; v0: (1, 22) -> anti-diagonal 23.
    assert out.ids[0] == "shared"
    assert out.rank_of("shared", "visual") == 21 and out.rank_of("v0", "social") is None
    # Dropping a modality just removes its column.
    assert fuse("tensor", [visual]).ids == tuple(visual.ids)


def test_worked_example_tensor_and_rrf() -> None:
    # visual: a b x | text: a b y | social: z b w
    #
    # Surfaces (pairs of lists) hold the items both lists ranked, walked by anti-diagonal
    # (rank sum), then by the better single rank:
    #   visual-text:   a (1,1), b (2,2)         -> surface ranks a 1, b 2
    #   visual-social: b (2,2)                  -> b 1
    #   text-social:   b (2,2)                  -> b 1
    #   z, w, x, y lie on no surface (one list each).
    # Tensor (c = 60): a = 1/61 = 0.0164; b = 1/62 + 2/61 = 0.0489; z, w, x, y = 0, ordered by
    #   best position (z 1; w, x, y 3), then id.   Tensor order: b, a, z, w, x, y.
    # RRF (c = 60): a = 2/61 = 0.0328, b = 3/62 = 0.0484, z = 1/61, w = x = y = 1/63.
    #   RRF order: b, a, z, w, x, y.
    lists = [
        RankedList.from_ids("visual", ["a", "b", "x"]),
        RankedList.from_ids("text", ["a", "b", "y"]),
        RankedList.from_ids("social", ["z", "b", "w"]),
    ]
    tensor, rrf = fuse("tensor", lists), fuse("rrf", lists)
    assert tensor.ids == ("b", "a", "z", "w", "x", "y")
    assert rrf.ids == ("b", "a", "z", "w", "x", "y")
    assert tensor.scores[0] == pytest.approx(1 / 62 + 2 / 61)
    assert tensor.scores[1] == pytest.approx(1 / 61)
    assert tensor.scores[2] == 0.0
    assert rrf.scores[0] == pytest.approx(3 / 62)
    assert tensor.to_records()[1] == {"id": "a", "score": tensor.scores[1], "ranks": {"text": 1, "visual": 1}}
