"""The held-out protocol of the oracle (real EuroSAT-MS patches): folds are stratified and disjoint, every item
is scored by a model that never saw it, and a figure that memorising the labelled items inflates in pool stays at
chance held out."""

from __future__ import annotations

import numpy as np
import pytest

from eofusion.active import OracleConfig, simulate, stratified_folds
from eofusion.active.eurosat import load_eurosat_ms, spectral_descriptors
from tests.conftest import data_path


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, np.ndarray]:
    s = load_eurosat_ms(data_path("eurosat-ms"))
    return spectral_descriptors(s.patches), np.asarray(s.labels)


def test_folds_are_stratified_disjoint_and_cover_every_item(sample: tuple[np.ndarray, np.ndarray]) -> None:
    _, labels = sample
    for seed in (0, 1):
        fold = stratified_folds(labels, 5, seed)
        assert fold.shape == labels.shape and set(fold.tolist()) == set(range(5))
        for c in set(labels.tolist()):
            counts = np.bincount(fold[labels == c], minlength=5)
            assert counts.max() - counts.min() <= 1, (c, counts)
        sizes = np.bincount(fold, minlength=5)
        assert sizes.max() - sizes.min() <= 1, sizes
    assert not np.array_equal(stratified_folds(labels, 5, 0), stratified_folds(labels, 5, 1))


def test_held_out_figures_do_not_count_what_the_model_memorised(sample: tuple[np.ndarray, np.ndarray]) -> None:
    # The classes shuffled across the patches: no descriptor predicts them. A model still "knows" the items it
    # was given, so scoring it on its own pool (labelled items included) rises above chance as labels grow;
    # scored on items it never saw, it stays at chance.
    x, labels = sample
    shuffled = np.random.default_rng(7).permutation(labels)
    classes = sorted(set(labels.tolist()))[:4]
    cfg = dict(n_rounds=3, batch_size=10, seeds=(0, 1, 2), methods=("random",))
    in_pool = simulate(x, shuffled, classes, OracleConfig(**cfg, folds=0))  # type: ignore[arg-type]
    held_out = simulate(x, shuffled, classes, OracleConfig(**cfg, folds=5))  # type: ignore[arg-type]
    ba_in = in_pool.mean("random", "balanced_accuracy")[-1]
    ba_out = held_out.mean("random", "balanced_accuracy")[-1]
    assert ba_out < 0.58, ba_out  # chance, within the spread of a few hundred (or dozen) items
    assert ba_in > ba_out + 0.05, (ba_in, ba_out)
    assert held_out.folds is not None and held_out.folds.shape == (3, labels.shape[0])
    assert "held out" in held_out.protocol and "in pool" in in_pool.protocol


def test_folds_must_be_zero_or_at_least_two() -> None:
    with pytest.raises(ValueError, match="folds"):
        OracleConfig(folds=1)
