"""The compiled scoring kernel: batch-shape invariance, late readings, and the forecaster
arithmetic it mirrors from ``core.scoring.forecaster``."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from core.scoring import kernel
from core.scoring.config import ScoringConfig
from core.scoring.engine import Engine, IfCalibration
from core.scoring.forecaster import ForecasterSpec, regressors, rls_update, stabilise
from core.scoring.forest import CompiledForest

CONFIG = ScoringConfig(warmup_readings=30, hst_window=20)
SPEC = ForecasterSpec(p=2, fourier_k=1, period_s=3600.0)


@pytest.fixture(scope="module")
def forest() -> CompiledForest:
    rng = np.random.default_rng(0)
    return CompiledForest(
        IsolationForest(n_estimators=10, max_samples=64, random_state=0).fit(
            rng.normal(size=(400, 6))
        )
    )


def _stream(n_sensors: int, per_sensor: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Interleaved readings of a few sensors, with outliers (so some are judged anomalous)."""
    rng = np.random.default_rng(1)
    sids, ts, xs = [], [], []
    for k in range(per_sensor):
        for j in range(n_sensors):
            v = 5.0 * j + np.sin(k / 9.0) + rng.normal(scale=0.1)
            sids.append(f"s{j}")
            ts.append(1.7e9 + 60.0 * k + j)
            xs.append(v + (40.0 if k % 37 == 36 else 0.0))
    return sids, np.array(ts), np.array(xs)


def _outputs(engine: Engine, sids: list[str], t: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Every per-reading output of one ``run`` call, one row per reading, in batch order."""
    ((pos, r),) = engine.run(sids, t, x)
    assert pos.tolist() == list(range(len(sids)))
    cols = [r.score, r.is_anomaly, r.warm, r.expected, r.sigma, r.has_history, r.learned]
    return np.column_stack([*cols, r.detectors, r.z, r.features])


def test_engine_construction_compiles_the_kernel() -> None:
    # A fresh interpreter: in this one, earlier tests may have compiled the kernel already.
    code = (
        "from core.scoring import kernel\n"
        "from core.scoring.config import ScoringConfig\n"
        "from core.scoring.engine import Engine, IfCalibration\n"
        "from core.scoring.forecaster import ForecasterSpec\n"
        "assert not kernel.run_batch.signatures\n"
        "Engine(ScoringConfig(), ForecasterSpec(), None, IfCalibration())\n"
        "print(len(kernel.run_batch.signatures))\n"
    )
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "1"


def test_any_split_of_a_batch_gives_the_same_scores_and_state(forest: CompiledForest) -> None:
    sids, t, x = _stream(3, 120)
    whole = Engine(CONFIG, SPEC, forest, IfCalibration())
    one_by_one = Engine(CONFIG, SPEC, forest, IfCalibration())
    by_sensor = Engine(CONFIG, SPEC, forest, IfCalibration())
    expected = _outputs(whole, sids, t, x)
    assert expected[:, 1].sum() > 0  # some readings were judged anomalous
    single = np.vstack(
        [_outputs(one_by_one, [s], t[i : i + 1], x[i : i + 1]) for i, s in enumerate(sids)]
    )
    np.testing.assert_array_equal(single, expected)
    grouped = np.empty_like(expected)
    for sensor in ("s2", "s0", "s1"):  # sensors in another order, each sensor's readings in order
        idx = np.array([i for i, s in enumerate(sids) if s == sensor])
        grouped[idx] = _outputs(by_sensor, [sensor] * len(idx), t[idx], x[idx])
    np.testing.assert_array_equal(grouped, expected)
    for a, b in ((whole, one_by_one), (whole, by_sensor)):
        rows_a = a.snapshot(np.array([a.slots[s] for s in ("s0", "s1", "s2")]))
        rows_b = b.snapshot(np.array([b.slots[s] for s in ("s0", "s1", "s2")]))
        for ra, rb in zip(rows_a, rows_b, strict=True):
            np.testing.assert_array_equal(ra, rb)


def test_a_late_reading_is_scored_but_changes_no_state(forest: CompiledForest) -> None:
    sids, t, x = _stream(1, 80)
    engine = Engine(CONFIG, SPEC, forest, IfCalibration())
    engine.run(sids, t, x)
    before = engine.snapshot(np.array([0]))
    ((_, r),) = engine.run(["s0"], np.array([t[-1] - 600.0]), np.array([123.0]))
    assert r.has_history[0] and not r.learned[0] and np.isfinite(r.score[0])
    for saved, now in zip(before, engine.snapshot(np.array([0])), strict=True):
        np.testing.assert_array_equal(saved, now)


def test_strided_inputs_reuse_the_compiled_kernel() -> None:
    engine = Engine(CONFIG, SPEC, None, IfCalibration())
    n_signatures = len(kernel.run_batch.signatures)
    t = 1.7e9 + 60.0 * np.arange(20.0)
    ((_, r),) = engine.run(["a"] * 10, t[::2], np.arange(20, dtype=np.int64)[::2])
    assert r.score.shape == (10,)
    assert len(kernel.run_batch.signatures) == n_signatures


@pytest.mark.parametrize(("d", "fourier_k"), [(0, 0), (0, 2), (1, 1)])
def test_regression_row_matches_the_forecaster(d: int, fourier_k: int) -> None:
    spec = ForecasterSpec(p=3, d=d, fourier_k=fourier_k, period_s=7200.0)
    rng = np.random.default_rng(2)
    lags = rng.normal(size=(5, spec.n_lags)) * 10.0
    level, scale, t = rng.normal(size=5), rng.uniform(0.5, 2.0, 5), rng.uniform(0, 1e9, 5)
    ip = np.zeros(kernel.N_IPARAMS, dtype=np.int64)
    ip[kernel.I_P], ip[kernel.I_D], ip[kernel.I_FOURIER_K] = spec.p, d, fourier_k
    want = regressors(spec, lags, level, scale, t)
    for i in range(5):
        phi = np.empty(spec.n_coef)
        kernel._regressors(phi, lags[i], level[i], scale[i], t[i], ip, spec.period_s)
        np.testing.assert_allclose(phi, want[i], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cov_max", [1e6, 3.0])  # the second one caps the trace
def test_rls_step_and_stabilisation_match_the_forecaster(cov_max: float) -> None:
    rng = np.random.default_rng(3)
    k, p = 5, 3
    theta = rng.normal(size=(1, k))
    a = rng.normal(size=(k, k))
    cov = (a @ a.T)[None] + np.eye(k)
    phi, err = rng.normal(size=(1, k)), rng.normal(size=1)
    th_k, cov_k = theta[0].copy(), cov[0].copy()
    kernel._rls_update(th_k, cov_k, phi[0], err[0], 0.99, cov_max, np.empty(k))
    rls_update(theta, cov, phi, err, 0.99, cov_max=cov_max)
    np.testing.assert_allclose(th_k, theta[0], rtol=1e-12)
    np.testing.assert_allclose(cov_k, cov[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(cov_k, cov_k.T)
    assert np.trace(cov_k) <= cov_max * (1 + 1e-12)
    th_k[1 : 1 + p] = theta[0, 1 : 1 + p] = [0.9, -0.5, 0.4]  # sum |phi| > 0.999
    kernel._stabilise(th_k, p)
    stabilise(theta, p)
    np.testing.assert_allclose(th_k, theta[0], rtol=1e-15)
    assert np.abs(th_k[1 : 1 + p]).sum() == pytest.approx(0.999)
