"""The BigEarthNet fused / S1 / S2 protocol runs on the six real pairs of the bigearthnet-common wheel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eofusion.active.bigearthnet import (
    BenProtocolConfig,
    PairWindows,
    cut_windows,
    evaluated_labels,
    held_out_predictions,
    in_pool,
    leave_one_pair_out,
    summary_rows,
    window_descriptors,
)
from eofusion.readers.archives import read_bigearthnet

SMALL = BenProtocolConfig(seeds=(0,), n_rounds=1)


@pytest.fixture(scope="module")
def windows(ben_root: tuple[Path, Path]) -> PairWindows:
    s1_root, s2_root = ben_root
    pairs = [(p.id, p.s2, p.s1, p.labels) for p in read_bigearthnet(s2_root, s1_root)]
    assert len(pairs) == 6 and all(s1 is not None for _, _, s1, _ in pairs)
    return cut_windows(pairs, 30)  # type: ignore[arg-type]


def test_windows_carry_their_pair_and_its_labels(windows: PairWindows, ben_root: tuple[Path, Path]) -> None:
    assert windows.n == 6 * 16 and windows.s2.shape[1:] == (4, 30, 30) and windows.s1.shape[1:] == (2, 30, 30)
    s1_root, s2_root = ben_root
    for k, patch in enumerate(read_bigearthnet(s2_root, s1_root)):
        rows = np.flatnonzero(windows.pair == k)
        assert rows.size == 16 and windows.pair_ids[k] == patch.id
        assert all(windows.labels[i] == frozenset(patch.labels) for i in rows)
        # The first window is the top-left corner of the pair, the last the bottom-right one.
        assert patch.s2 is not None and np.array_equal(windows.s2[rows[0]], patch.s2[:, :30, :30])
        assert np.array_equal(windows.s2[rows[-1]], patch.s2[:, 90:, 90:])
    labels = evaluated_labels(windows, 2)
    assert labels and all(2 <= sum(lab in windows.labels[np.flatnonzero(windows.pair == k)[0]]
                                   for k in range(6)) < 6 for lab in labels)


def test_protocol_gives_one_row_per_descriptor_in_unit_range(windows: PairWindows) -> None:
    descriptors = window_descriptors(windows)
    assert set(descriptors) == {"fused", "s1", "s2", "s2-spectral"}
    for name, x in descriptors.items():
        assert x.shape[0] == windows.n and np.isfinite(x).all(), name
        np.testing.assert_allclose(x.sum(axis=1), 1.0, atol=1e-4)  # histograms: the Hellinger map applies
    for results in (leave_one_pair_out(descriptors, windows, SMALL), in_pool(descriptors, windows, SMALL)):
        for method in SMALL.methods:
            rows = summary_rows(results, method)
            assert [r["descriptor"] for r in rows] == list(descriptors)
            for r in rows:
                for metric in ("balanced_accuracy", "f1"):
                    assert 0.0 <= float(r[metric]) <= 1.0, r
        first = next(iter(results.values()))
        assert first.n_labels[0] == SMALL.n_initial_positive + SMALL.n_initial_negative
        assert first.n_labels[-1] == first.n_labels[0] + SMALL.batch_size


def test_protocol_is_reproducible_and_holds_the_pair_out(windows: PairWindows) -> None:
    s1 = {"s1": window_descriptors(windows)["s1"]}
    a = leave_one_pair_out(s1, windows, SMALL)["s1"]
    b = leave_one_pair_out(s1, windows, SMALL)["s1"]
    for m in SMALL.methods:
        np.testing.assert_array_equal(a.scores[m], b.scores[m])
    # A descriptor that only says which pair a window comes from carries nothing about an unseen
    # pair: if a held-out window were ever predicted by a model trained on its own pair, windows of
    # one pair could get different predictions; held out, each pair gets one constant prediction.
    onehot = np.eye(6, dtype=np.float32)[windows.pair]
    label = evaluated_labels(windows, 2)[0]
    y = np.asarray([label in labs for labs in windows.labels])
    for method in SMALL.methods:
        pred, counts = held_out_predictions(onehot, y, windows.pair, (0,), SMALL, method)
        assert pred.shape == (SMALL.n_rounds + 1, windows.n) and counts.tolist() == [6, 10]
        for k in range(6):
            assert (pred[:, windows.pair == k] == pred[:, windows.pair == k][:, :1]).all()
    # In the pool (the EuroSAT protocol) the same descriptor separates the labelled pairs' windows.
    seen = in_pool({"pair id": onehot}, windows, SMALL)["pair id"]
    assert seen.final("active", "balanced_accuracy").mean() > 0.5
