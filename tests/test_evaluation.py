"""Tests of the retrieval and classification metrics, cross-checked against scikit-learn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn import metrics as skm

from eofusion.evaluation import (
    average_precision,
    balanced_accuracy,
    confusion_matrix,
    mean_average_precision,
    overall_accuracy,
    precision_at_k,
    precision_recall_f1,
    recall_at_k,
    recall_at_k_with_ties,
    relevance_mask,
)

PROPERTY = settings(deadline=None, max_examples=80, database=None)


@st.composite
def scored_collection(draw: st.DrawFn) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Ids, binary relevance with at least one positive, and distinct scores."""
    n = draw(st.integers(1, 40))
    y = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    if not y.any():
        y[draw(st.integers(0, n - 1))] = True
    # A random permutation as scores: no ties, so the ranking is unambiguous.
    seed = draw(st.integers(0, 2**32 - 1))
    scores = np.random.default_rng(seed).permutation(n).astype(float)
    return [f"d{i}" for i in range(n)], y, scores


def ranking_of(ids: list[str], scores: np.ndarray) -> list[str]:
    return [ids[i] for i in np.argsort(-scores, kind="stable")]


@pytest.fixture(autouse=True)
def _metrics_do_not_warn():
    """Our metrics must never warn (zero divisions are handled)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def sk(fn, *args, **kwargs):
    """Call scikit-learn with its own warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# --- retrieval ----------------------------------------------------------------------------


@PROPERTY
@given(data=scored_collection())
def test_average_precision_matches_sklearn(data: tuple[list[str], np.ndarray, np.ndarray]) -> None:
    ids, y, scores = data
    ranked = ranking_of(ids, scores)
    relevant = {i for i, r in zip(ids, y, strict=True) if r}
    expected = sk(skm.average_precision_score, y, scores)
    assert average_precision(ranked, relevant) == pytest.approx(expected, abs=1e-12)
    # Same through a boolean mask aligned with the ranking.
    mask = relevance_mask(ranked, relevant)
    assert average_precision(ranked, mask) == pytest.approx(expected, abs=1e-12)


@PROPERTY
@given(data=scored_collection(), k=st.integers(1, 50))
def test_precision_and_recall_at_k(data: tuple[list[str], np.ndarray, np.ndarray], k: int) -> None:
    ids, y, scores = data
    ranked = ranking_of(ids, scores)
    relevant = {i for i, r in zip(ids, y, strict=True) if r}
    top = set(ranked[:k])
    # Cross-check with scikit-learn: predicting "relevant" for the top k (padded to k).
    y_top = np.array([i in top for i in ids])
    tp = int((y & y_top).sum())
    assert precision_at_k(ranked, relevant, k) == pytest.approx(tp / k)
    assert recall_at_k(ranked, relevant, k) == pytest.approx(sk(skm.recall_score, y, y_top))
    if k <= len(ids):
        assert precision_at_k(ranked, relevant, k) == pytest.approx(sk(skm.precision_score, y, y_top))
    # AP is the mean of precision@i at the ranks of the relevant items.
    ranks = [r + 1 for r, i in enumerate(ranked) if i in relevant]
    assert average_precision(ranked, relevant) == pytest.approx(
        np.mean([precision_at_k(ranked, relevant, r) for r in ranks])
    )


@PROPERTY
@given(queries=st.lists(scored_collection(), min_size=1, max_size=6), drop=st.integers(0, 3))
def test_mean_average_precision(queries: list[tuple[list[str], np.ndarray, np.ndarray]], drop: int) -> None:
    rankings, relevants = [], []
    for ids, y, scores in queries:
        # Truncate the ranking: relevant items that were not retrieved must lower AP.
        rankings.append(ranking_of(ids, scores)[: max(1, len(ids) - drop)])
        relevants.append({i for i, r in zip(ids, y, strict=True) if r})
    aps = [average_precision(r, rel) for r, rel in zip(rankings, relevants, strict=True)]
    assert mean_average_precision(rankings, relevants) == pytest.approx(np.mean(aps))
    for (ids, y, scores), ap, ranked in zip(queries, aps, rankings, strict=True):
        full = sk(skm.average_precision_score, y, scores)
        assert ap <= full + 1e-12
        if len(ranked) == len(ids):
            assert ap == pytest.approx(full)


def test_retrieval_edge_cases() -> None:
    assert average_precision(["a", "b"], set()) == 0.0
    assert recall_at_k(["a", "b"], set(), 1) == 0.0
    assert precision_at_k(["a"], {"a"}, 3) == pytest.approx(1 / 3)  # padded with misses
    mask = np.array([False, True])
    assert average_precision(["a", "b"], mask) == pytest.approx(0.5)
    assert average_precision(["a", "b"], mask, n_relevant=2) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        precision_at_k(["a", "a"], {"a"}, 1)
    with pytest.raises(ValueError):
        precision_at_k(["a"], {"a"}, 0)
    with pytest.raises(ValueError):
        relevance_mask(["a", "b"], np.array([True]))
    with pytest.raises(ValueError):
        mean_average_precision([], [])


def test_recall_with_ties_worked_example() -> None:
    true_ids = ["a", "b", "c", "d", "e"]
    true_dists = [0.1, 0.2, 0.2, 0.2, 0.5]
    # k = 2: the 2nd true distance is 0.2, shared by b, c and d; any of them is correct.
    assert recall_at_k_with_ties(true_dists, ["a", "c"], true_ids, 2) == 1.0
    assert recall_at_k_with_ties(true_dists, ["d", "b"], true_ids, 2) == 1.0
    assert recall_at_k_with_ties(true_dists, ["a", "e"], true_ids, 2) == 0.5
    # Plain set recall would have called ["a", "c"] half wrong.
    assert len({"a", "c"} & set(true_ids[:2])) / 2 == 0.5
    # Unknown ids do not count, a repeated id counts once, and only the first k positions count.
    assert recall_at_k_with_ties(true_dists, ["zz", "a", "b"], true_ids, 2) == 0.5
    assert recall_at_k_with_ties(true_dists, ["a", "a", "b"], true_ids, 2) == 0.5
    # Distances recomputed elsewhere: a float a hair above the threshold still ties.
    assert recall_at_k_with_ties(true_dists, ["x", "y"], true_ids, 2, found_dists=[0.1, 0.2 + 1e-12]) == 1.0
    assert recall_at_k_with_ties(true_dists, ["x", "y"], true_ids, 2, found_dists=[0.1, 0.21]) == 0.5
    # Fewer ground-truth items than k: all of them are required.
    assert recall_at_k_with_ties([0.1], ["a"], ["a"], 10) == 1.0
    with pytest.raises(ValueError):
        recall_at_k_with_ties([0.2, 0.1], ["a"], ["a", "b"], 1)
    with pytest.raises(ValueError):
        recall_at_k_with_ties([], ["a"], [], 1)


@PROPERTY
@given(
    dists=hnp.arrays(np.int64, st.integers(1, 30), elements=st.integers(0, 6)),
    k=st.integers(1, 35),
    seed=st.integers(0, 2**32 - 1),
)
def test_recall_with_ties_against_brute_force(dists: np.ndarray, k: int, seed: int) -> None:
    # Integer distances make many exact ties; the whole collection is the ground truth.
    rng = np.random.default_rng(seed)
    n = dists.shape[0]
    ids = np.array([f"p{i}" for i in range(n)])
    order = np.argsort(dists, kind="stable")
    true_ids, true_dists = ids[order].tolist(), dists[order].astype(float)
    found = rng.permutation(ids)[: rng.integers(0, n + 1)].tolist()
    kk = min(k, n)
    kth = true_dists[kk - 1]
    correct = sum(1 for f in found[:k] if dists[int(f[1:])] <= kth)
    got = recall_at_k_with_ties(true_dists, found, true_ids, k)
    assert got == pytest.approx(correct / kk)
    # Never below plain recall (intersection with one arbitrary exact top-k), and equal to it
    # when there is no tie at the k-th distance.
    plain = len(set(found[:k]) & set(true_ids[:kk])) / kk
    assert got >= plain
    if np.count_nonzero(true_dists == kth) == 1 or kk == n:
        assert got == pytest.approx(plain)
    # Looking distances up or passing them gives the same answer.
    found_d = [float(dists[int(f[1:])]) for f in found]
    assert recall_at_k_with_ties(true_dists, found, true_ids, k, found_dists=found_d) == pytest.approx(got)


# --- classification -----------------------------------------------------------------------

labels_1d = st.integers(1, 60).flatmap(
    lambda n: st.tuples(
        hnp.arrays(np.int64, n, elements=st.integers(0, 5)),
        hnp.arrays(np.int64, n, elements=st.integers(0, 5)),
    )
)


@PROPERTY
@given(pair=labels_1d)
def test_classification_matches_sklearn(pair: tuple[np.ndarray, np.ndarray]) -> None:
    y_true, y_pred = pair
    assert np.array_equal(confusion_matrix(y_true, y_pred), sk(skm.confusion_matrix, y_true, y_pred))
    assert overall_accuracy(y_true, y_pred) == pytest.approx(sk(skm.accuracy_score, y_true, y_pred))
    assert balanced_accuracy(y_true, y_pred) == pytest.approx(sk(skm.balanced_accuracy_score, y_true, y_pred))
    for zero_division in (0.0, 1.0):
        ours = precision_recall_f1(y_true, y_pred, zero_division=zero_division)
        p, r, f, s = sk(skm.precision_recall_fscore_support, y_true, y_pred, average=None, zero_division=zero_division)
        assert np.array_equal(ours.labels, np.unique(np.concatenate([y_true, y_pred])))
        np.testing.assert_allclose(ours.precision, p)
        np.testing.assert_allclose(ours.recall, r)
        np.testing.assert_allclose(ours.f1, f)
        np.testing.assert_array_equal(ours.support, s)


@PROPERTY
@given(pair=labels_1d, labels=st.lists(st.integers(0, 7), min_size=1, max_size=8, unique=True))
def test_explicit_labels_match_sklearn(pair: tuple[np.ndarray, np.ndarray], labels: list[int]) -> None:
    # Labels may include classes that never occur (zero_division applies) and omit ones that do.
    y_true, y_pred = pair
    ours = precision_recall_f1(y_true, y_pred, labels=labels, zero_division=1.0)
    p, r, f, s = sk(skm.precision_recall_fscore_support, y_true, y_pred, labels=labels, average=None, zero_division=1.0)
    np.testing.assert_allclose(ours.precision, p)
    np.testing.assert_allclose(ours.recall, r)
    np.testing.assert_allclose(ours.f1, f)
    np.testing.assert_array_equal(ours.support, s)
    cm = confusion_matrix(y_true, y_pred, labels)
    if np.intersect1d(y_true, labels).size:
        assert np.array_equal(cm, sk(skm.confusion_matrix, y_true, y_pred, labels=labels))
    else:  # scikit-learn refuses this case; no listed class is true, so no row has counts
        assert not cm.any()


@PROPERTY
@given(
    shape=st.tuples(st.integers(1, 30), st.integers(2, 8)),  # >= 2 columns: sklearn's multilabel
    seed=st.integers(0, 2**32 - 1),
)
def test_multilabel_matches_sklearn(shape: tuple[int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    y_true = rng.random(shape) < 0.3
    y_pred = rng.random(shape) < 0.3
    ours = precision_recall_f1(y_true.astype(int), y_pred.astype(int))
    p, r, f, s = sk(skm.precision_recall_fscore_support, y_true, y_pred, average=None, zero_division=0.0)
    np.testing.assert_allclose(ours.precision, p)
    np.testing.assert_allclose(ours.recall, r)
    np.testing.assert_allclose(ours.f1, f)
    np.testing.assert_array_equal(ours.support, s)
    assert overall_accuracy(y_true, y_pred) == pytest.approx(sk(skm.accuracy_score, y_true, y_pred))


def test_string_labels_and_errors() -> None:
    y_true = np.array(["water", "forest", "urban", "water"])
    y_pred = np.array(["water", "urban", "urban", "forest"])
    ours = precision_recall_f1(y_true, y_pred)
    assert ours.labels.tolist() == ["forest", "urban", "water"]
    np.testing.assert_allclose(ours.recall, [0.0, 1.0, 0.5])
    np.testing.assert_allclose(ours.precision, [0.0, 0.5, 1.0])
    assert balanced_accuracy(y_true, y_pred) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        overall_accuracy([], [])
    with pytest.raises(ValueError):
        balanced_accuracy([1, 2], [1])
