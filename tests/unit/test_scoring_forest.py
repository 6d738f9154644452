"""The compiled forest scores exactly like scikit-learn's IsolationForest (pinned version)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from core.scoring.forest import CompiledForest, average_path_length


@pytest.mark.parametrize("max_samples", [16, 256, "auto"])
def test_compiled_forest_matches_sklearn_score_samples(max_samples: int | str) -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(size=(3000, 6))
    train[:30] *= 6.0
    forest = IsolationForest(n_estimators=60, max_samples=max_samples, random_state=4).fit(train)
    compiled = CompiledForest(forest)
    probe = np.vstack([rng.normal(size=(500, 6)) * 3.0, train[:200]])
    np.testing.assert_allclose(
        compiled.anomaly_score(probe), -forest.score_samples(probe), rtol=0, atol=1e-12
    )


def test_values_on_split_thresholds_take_sklearns_branch() -> None:
    rng = np.random.default_rng(1)
    train = rng.integers(0, 5, size=(800, 3)).astype(np.float64)
    forest = IsolationForest(n_estimators=20, random_state=2).fit(train)
    compiled = CompiledForest(forest)
    # Thresholds of the first tree, and values one float32 ulp either side of them.
    thr = forest.estimators_[0].tree_.threshold
    thr = thr[thr != -2.0][:10].astype(np.float32)
    probe = np.stack([thr, np.nextafter(thr, np.float32(np.inf)), thr], axis=1).astype(np.float64)
    np.testing.assert_allclose(
        compiled.anomaly_score(probe), -forest.score_samples(probe), rtol=0, atol=1e-12
    )


def test_outliers_score_higher_than_inliers() -> None:
    rng = np.random.default_rng(3)
    forest = IsolationForest(n_estimators=50, random_state=0).fit(rng.normal(size=(2000, 4)))
    compiled = CompiledForest(forest)
    inlier = compiled.anomaly_score(np.zeros((1, 4)))[0]
    outlier = compiled.anomaly_score(np.full((1, 4), 6.0))[0]
    assert outlier > 0.6 > inlier


def test_average_path_length_edge_cases() -> None:
    got = average_path_length(np.array([0.0, 1.0, 2.0, 256.0]))
    assert got[0] == 0.0 and got[1] == 0.0 and got[2] == 1.0
    assert got[3] == pytest.approx(2 * (np.log(255) + np.euler_gamma) - 2 * 255 / 256)
