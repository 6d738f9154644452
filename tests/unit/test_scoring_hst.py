"""Half-space trees: structure within limits, mass learning, outliers score higher."""

from __future__ import annotations

import numpy as np

from core.scoring.hst import HalfSpaceForest


def test_splits_lie_within_the_feature_limits() -> None:
    hst = HalfSpaceForest(n_features=3, n_trees=5, height=4, limit=4.0, seed=1)
    assert hst.split_feat.shape == (5, 15)
    assert (np.abs(hst.split_val) <= 4.0).all()
    assert set(np.unique(hst.split_feat)) <= {0, 1, 2}


def test_dense_region_scores_lower_than_an_outlier_after_one_window() -> None:
    rng = np.random.default_rng(0)
    hst = HalfSpaceForest(n_features=2, n_trees=20, height=5, limit=4.0, seed=2)
    ref = np.zeros((1, 20, hst.n_nodes), dtype=np.float32)
    latest = np.zeros_like(ref)
    slots = np.array([0])
    for _ in range(200):
        x = rng.normal(scale=0.5, size=(1, 2))
        hst.learn(latest, hst.flat_index(slots, hst.paths(x)))
    ref[:] = latest
    assert ref[0, :, 0].tolist() == [200.0] * 20  # every point passes each root
    inlier = hst.score(ref, hst.flat_index(slots, hst.paths(np.zeros((1, 2)))), 200)[0]
    outlier = hst.score(ref, hst.flat_index(slots, hst.paths(np.full((1, 2), 3.5))), 200)[0]
    assert outlier > inlier
