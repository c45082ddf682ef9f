"""The choices of issue 15 item 3 on real EuroSAT-MS patches: a diverse cold start (k-means seeds), a decision
threshold calibrated inside the marks only and carried by the model (round trip, older models), the oracle's
cold-start option, and the multi-scale Sentinel-2 descriptor (every band, contrast at three scales)."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile

import numpy as np
import pytest

from eofusion.active import (
    LinearModel,
    OracleConfig,
    RoundConfig,
    calibrate_threshold,
    cold_start_queries,
    fit_model,
    kmeans_seeds,
    prepare_pool,
    run_round,
    simulate,
)
from eofusion.active.eurosat import EUROSAT_BANDS, load_eurosat_ms, multiscale_descriptors
from eofusion.active.round import FeatureMap, model_from_bytes, model_to_bytes
from eofusion.features import S2_L2A_BANDS
from eofusion.features.s2multiscale import S2MultiScaleConfig, S2MultiScaleDescriptor
from tests.conftest import data_path


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = load_eurosat_ms(data_path("eurosat-ms"))
    return s.patches, multiscale_descriptors(s.patches), np.asarray(s.labels)


def _coverage(features: np.ndarray, chosen: np.ndarray) -> float:
    """Mean distance from every row to its nearest chosen row (smaller = the pool is better covered)."""
    d2 = ((features[:, None, :] - features[None, chosen, :]) ** 2).sum(axis=2)
    return float(np.sqrt(d2.min(axis=1)).mean())


def test_kmeans_seeds_are_distinct_cover_the_pool_and_skip_the_positives(sample: tuple) -> None:
    _, x, labels = sample
    feats = prepare_pool(x, RoundConfig()).features
    positives = np.flatnonzero(labels == "Forest")[:3]
    k = 8
    seeds = kmeans_seeds(feats, k, seed=0, exclude=positives)
    assert seeds.size == k and np.unique(seeds).size == k
    assert not set(seeds.tolist()) & set(positives.tolist())
    assert np.array_equal(seeds, kmeans_seeds(feats, k, seed=0, exclude=positives))  # reproducible
    # Diverse: the seeds cover the pool better than random draws of as many patches, and better than the
    # patches nearest the positives (which all look alike).
    rng = np.random.default_rng(0)
    others = np.setdiff1d(np.arange(feats.shape[0]), positives)
    random_cov = np.mean([_coverage(feats, rng.choice(others, k, replace=False)) for _ in range(30)])
    nearest = cold_start_queries("nearest", feats, positives, k)
    assert _coverage(feats, seeds) < random_cov
    assert _coverage(feats, seeds) < _coverage(feats, nearest)
    # They land in several land-cover classes; the nearest-positive queries crowd around Forest.
    assert len(set(labels[seeds].tolist())) >= 4
    assert len(set(labels[seeds].tolist())) > len(set(labels[nearest].tolist())) or \
        len(set(labels[nearest].tolist())) >= 4


def test_cold_start_strategies_return_distinct_unmarked_rows(sample: tuple) -> None:
    _, x, labels = sample
    feats = prepare_pool(x, RoundConfig()).features
    positives = np.flatnonzero(labels == "SeaLake")[:2]
    for strategy in ("nearest", "mean", "kmeans"):
        q = cold_start_queries(strategy, feats, positives, 5)  # type: ignore[arg-type]
        assert q.size == 5 and np.unique(q).size == 5 and not set(q.tolist()) & set(positives.tolist()), strategy
    # The mean of the positives is a query of its own: its nearest rows are ranked by distance to it.
    mean_q = cold_start_queries("mean", feats, positives, 1, candidate_factor=1)
    d = ((feats - feats[positives].mean(axis=0)) ** 2).sum(axis=1)
    d[positives] = np.inf
    assert mean_q[0] == int(np.argmin(d))
    with pytest.raises(ValueError, match="cold start"):
        cold_start_queries("farthest", feats, positives, 3)  # type: ignore[arg-type]


def test_calibrated_threshold_comes_from_the_marks_only(sample: tuple) -> None:
    _, x, labels = sample
    pool = prepare_pool(x, RoundConfig())
    rng = np.random.default_rng(3)
    shifts = []
    for c in sorted(set(labels.tolist())):
        # Sorted: a round orders its marks by pool index, and the calibration's folds follow that order.
        pos = np.sort(rng.choice(np.flatnonzero(labels == c), 4, replace=False))
        neg = np.sort(rng.choice(np.flatnonzero(labels != c), 12, replace=False))
        cfg = RoundConfig(threshold="cv", n_queries=5)
        res = run_round(pool, pos, neg, cfg)
        model = res.model
        assert isinstance(model, LinearModel)
        marks = np.concatenate([pos, neg])
        y = np.zeros(marks.size, dtype=bool)
        y[: pos.size] = True
        expected = calibrate_threshold(pool.features[marks], y, cfg)
        assert model.threshold_shift == expected
        plain = fit_model(pool.features[marks], y, RoundConfig(), FeatureMap("sqrt"))
        assert isinstance(plain, LinearModel)
        np.testing.assert_array_equal(model.weights, plain.weights)
        assert model.bias == pytest.approx(plain.bias - expected, abs=1e-12)
        # One definition of "predicted positive": score > 0 of the calibrated model = plain score > shift.
        np.testing.assert_array_equal(res.scores > 0, plain.score_features(pool.features) - expected > 0)
        # The unmarked rows play no part: change all of them and the model stays the same.
        other = pool.features.copy()
        rest = np.setdiff1d(np.arange(pool.n), marks)
        other[rest] = other[rng.permutation(rest)][:, ::-1]
        again = fit_model(other[marks], y, cfg, FeatureMap("sqrt"))
        assert isinstance(again, LinearModel) and again.threshold_shift == expected
        shifts.append(expected)
    assert any(s != 0 for s in shifts), "calibration moved no threshold: the test would not see a broken one"
    # Too few marks of a class to cross-validate: the SVM's own threshold.
    tiny = fit_model(pool.features[[0, 1, 2]], np.array([True, False, False]), RoundConfig(threshold="cv"),
                     FeatureMap("sqrt"))
    assert isinstance(tiny, LinearModel) and tiny.threshold_shift == 0.0
    with pytest.raises(ValueError, match="threshold"):
        RoundConfig(threshold="median")  # type: ignore[arg-type]


def test_model_round_trips_with_its_threshold_and_older_models_still_load(sample: tuple) -> None:
    _, x, labels = sample
    pool = prepare_pool(x, RoundConfig())
    pos = np.flatnonzero(labels == "Highway")[:4]
    neg = np.flatnonzero(labels != "Highway")[:12]
    model = run_round(pool, pos, neg, RoundConfig(threshold="cv")).model
    assert isinstance(model, LinearModel)
    model = LinearModel(model.feature_map, model.weights, model.bias, model.n_support,
                        model.threshold_shift or 0.25)  # a shift that is surely non-zero
    back = model_from_bytes(model_to_bytes(model))
    assert isinstance(back, LinearModel)
    assert back.threshold_shift == model.threshold_shift and back.bias == model.bias
    np.testing.assert_array_equal(back.score_features(pool.features), model.score_features(pool.features))
    # A model stored before the threshold existed: its header has no "threshold_shift".
    plain = LinearModel(model.feature_map, model.weights, 0.5, model.n_support)
    blob = model_to_bytes(plain)
    with np.load(io.BytesIO(blob)) as archive:
        header = json.loads(bytes(archive["header"]).decode())
    assert "threshold_shift" not in header
    old = model_from_bytes(blob)
    assert isinstance(old, LinearModel) and old.threshold_shift == 0.0 and old.bias == 0.5
    # A damaged shift is refused, not read as a number.
    buf = io.BytesIO()
    bad = dict(header, threshold_shift="high")
    with zipfile.ZipFile(io.BytesIO(blob)) as zin:
        weights = np.load(io.BytesIO(zin.read("weights.npy")))
    np.savez(buf, header=np.frombuffer(json.dumps(bad).encode(), dtype=np.uint8), weights=weights)
    with pytest.raises(ValueError, match="threshold_shift"):
        model_from_bytes(buf.getvalue())


def test_oracle_cold_start_changes_the_active_start_only(sample: tuple) -> None:
    _, x, labels = sample
    classes = ["Forest", "River"]
    base = dict(seeds=(0,), folds=2, n_rounds=1, batch_size=4, n_initial_positive=2, n_initial_negative=3)
    rnd = simulate(x, labels, classes, OracleConfig(**base))  # type: ignore[arg-type]
    km = simulate(x, labels, classes, OracleConfig(**base, cold_start="kmeans"))  # type: ignore[arg-type]
    np.testing.assert_array_equal(km.scores["random"], rnd.scores["random"])  # the baseline is untouched
    np.testing.assert_array_equal(km.n_labels["active"], rnd.n_labels["active"])  # as many marks
    assert not np.array_equal(km.scores["active"], rnd.scores["active"])
    with pytest.raises(ValueError, match="cold start"):
        OracleConfig(cold_start="everything")  # type: ignore[arg-type]


def test_multiscale_descriptor_sums_to_one_and_skips_nodata(sample: tuple) -> None:
    patches, x, _ = sample
    keep = [i for i, b in enumerate(EUROSAT_BANDS) if b != "B10"]
    patches = patches[:, keep]  # the twelve bands of an L2A product, in EuroSAT's order
    d = S2MultiScaleDescriptor(S2MultiScaleConfig(bands=tuple(EUROSAT_BANDS[i] for i in keep)))
    assert x.shape == (patches.shape[0], d.dim) and d.dim == 64 + 16 * (12 + 5 + 2 * 3)
    np.testing.assert_array_equal(d.batch(patches), x)
    np.testing.assert_allclose(x.sum(axis=1), 1.0, atol=1e-5)
    assert (x >= 0).all()
    # A block of nodata: the vector stays finite, sums to 1 and is the one of the valid pixels, not of zeros.
    p = patches[:1].copy()
    p[:, :, :20, :20] = np.nan
    v = d.batch(p)[0]
    assert np.isfinite(v).all() and v.sum() == pytest.approx(1.0, abs=1e-5)
    z = patches[:1].copy()
    z[:, :, :20, :20] = 0.0
    assert not np.allclose(v, d.batch(z)[0])
    # Every part moves the vector: contrast at a coarser scale differs from the 10 m one.
    one = S2MultiScaleDescriptor(dataclasses.replace(d.config, scales=(1,))).batch(patches[:4])
    assert one.shape[1] == d.dim - 16 * 2 * 2
    with pytest.raises(ValueError, match="bands"):
        S2MultiScaleConfig(bands=("B02", "B03", "B04"))
    with pytest.raises(ValueError, match="12 band"):
        d.batch(patches[:2, :11])
    # The default is the L2A band order (what an L2A product stacks).
    assert S2MultiScaleDescriptor().config.bands == S2_L2A_BANDS


def test_first_round_queries_follow_the_cold_start(sample: tuple) -> None:
    _, x, labels = sample
    pool = prepare_pool(x, RoundConfig())
    positives = np.flatnonzero(labels == "Industrial")[:3]
    queries = {}
    for strategy in ("nearest", "mean", "kmeans"):
        res = run_round(pool, positives, (), RoundConfig(n_queries=6, cold_start=strategy))  # type: ignore[arg-type]
        q = res.query_indices
        assert q.size == 6 and np.unique(q).size == 6 and not set(q.tolist()) & set(positives.tolist()), strategy
        assert res.metrics.model == "nearest-positive"  # the top list is still the positives' neighbours
        queries[strategy] = q
    np.testing.assert_array_equal(queries["kmeans"], np.sort(np.setdiff1d(np.arange(pool.n), positives))[
        kmeans_seeds(pool.features[np.setdiff1d(np.arange(pool.n), positives)], 6, 0)])
    d = ((pool.features.astype(np.float64) - pool.features[positives].astype(np.float64).mean(axis=0)) ** 2).sum(1)
    d[positives] = np.inf
    assert queries["mean"][0] == int(np.argmin(d))
    assert _coverage(pool.features, queries["kmeans"]) < _coverage(pool.features, queries["nearest"])
    # A later round (negatives marked) is unaffected by the cold start.
    neg = np.flatnonzero(labels != "Industrial")[:5]
    a = run_round(pool, positives, neg, RoundConfig(cold_start="kmeans"))
    b = run_round(pool, positives, neg, RoundConfig())
    np.testing.assert_array_equal(a.query_indices, b.query_indices)
