"""Every tunable of the scoring library, in one frozen dataclass with documented defaults.

The defaults were tuned on the simulator with the *tuning* seeds listed in
``docs/ml/detection.md``; the quality figures there come from other seeds. Window lengths are in
readings (not seconds) because sensors report at very different rates; the few time-based settings
carry ``_s`` in their name.

A deployment overrides any of them with the ``SCORING`` setting (a JSON object, see
``core.settings.ScoringSettings``), applied by :func:`apply_overrides`.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any


@dataclass(frozen=True)
class ScoringConfig:
    """Tunables of :class:`core.scoring.Scorer`; construct with keyword overrides.

    Warm-up and learning:
        warmup_readings: readings a sensor must have learned before it may be judged anomalous
            (the forecaster, scales and the online detector need this much to be meaningful).
        max_sensors: hard bound on sensors held in one process (state is preallocated in blocks).

    Forecaster (online ARIMA-family, see ``forecaster.py``):
        rls_forgetting: forgetting factor of the recursive least squares update; 0.995 remembers
            ~200 readings, so coefficients follow slow changes of a sensor's dynamics.
        level_alpha / scale_alpha: EWMA weights of the slow level and scale used to normalise.
        residual_alpha: EWMA weight of the residual scale (the prediction band's sigma).
        band_z80 / band_z95: half-widths of the 80 % / 95 % forecast intervals in sigmas.
        band_z: half-width of the per-reading band (``lower``/``upper`` of a Score) in sigmas.
        clean_z: an anomalous reading enters the forecaster's lags winsorised to
            ``expected +- clean_z * sigma`` (robust filtering: bounded influence, no run-away).
        gap_factor / gap_cap: a gap longer than ``gap_factor`` typical intervals widens the band
            by sqrt(gap/interval), capped at ``gap_cap`` intervals.

    Features and detectors:
        short_window: readings of the short rolling window (rolling z-score and spread).
        feature_clip: every engineered feature is clipped to [-clip, clip]; also the half-space
            trees' feature limits.
        hst_trees / hst_height / hst_window: shape and reference-window length of the online
            half-space trees.
        calib_alpha: EWMA weight of the per-sensor calibration of the tree detectors' raw scores.

    Combining:
        z_alarm_residual / z_alarm_if / z_alarm_hst: each detector's standardised statistic at
            which its calibrated score crosses 0.5.
        var_alpha / var_cap / var_alarm: the residual detector's short-window variance test —
            EWMA (weight var_alpha) of z^2 capped at var_cap per reading; var_alarm is the level
            that counts as the residual alarm (about three |z| > 3 readings in a row).
        score_slope: steepness of the logistic map from standardised statistic to [0, 1].
        threshold: the ensemble score at or above which a reading is an anomaly.
        detector_weights: multipliers of each detector's score before the ensemble's max (the
            benchmark zeroes all but one to measure a single detector).

    Per-sensor calibration:
        max_alarm_rate / alarm_rate_alpha: each sensor tracks the |residual z| that onsets of
            band exceedance pass at rate max_alarm_rate (log-domain stochastic approximation,
            step alarm_rate_alpha); a sensor whose level exceeds the Gaussian one gets its band
            widened by the ratio, so one jumpy sensor does not alert all day.

    Drift and adaptation:
        cusum_k / cusum_h: drift detector on the standardised residuals of learned readings;
            when it fires, the forecaster's covariance is reset so it relearns quickly.
        adapt_after: consecutive anomalous readings after which a persistent, consistent level
            shift is accepted as the new normal (level and band re-anchor; alerts then clear);
            any anomalous run three times as long is accepted as a change of regime.
        adapt_consistency: how consistent (|mean| / sd of the deviations from the level in the
            run) a run must be to count as a level shift rather than a noise burst.
        seed: seed of the half-space trees' random structure (and the built-in fallback forest).

    Regime memory (operating levels; ``kernel.py`` explains the mechanism):
        regimes: levels remembered per sensor (slots; the least used one is recycled).
        regime_z: a reading the current forecast misses by more than regime_z sigmas, and that
            lies within regime_z spreads of a known level, is a switch to that level.
        regime_separation: levels are told apart only when they lie more than this many
            within-level spreads (sqrt of the long-run scale) apart; a sensor whose values
            wander over their range (daily cycle, weather) never switches.
        regime_lived / regime_known: a return to a level is normal once the sensor has
            operated there for regime_lived readings (in stays that began as normal switches,
            or outlasted regime_lived), or keeps coming back to it (two completed episodes and
            regime_known readings in all). So a fault recurring at the same value alerts again,
            while a load's set points and a machine's running level are learned
            (``kernel._regime_known``).
        regime_frequent: a sensor that switches more often than this per reading (learned
            rate) has shown that levels are how it works: any level with regime_known readings
            is known for it.
        regime_min_readings: learned readings before switches are considered at all (the first
            sigma estimates are too rough to tell a jump from noise).
        regime_memory_s: time constant of the decay of each level's readings count, so a level
            not visited for many days is forgotten.
        regime_rate_alpha: EWMA weight of the learned switches per reading; a switch costs
            -log(rate), and a one-reading visit to a level of a rarely switching sensor costs
            about twice that (see ``kernel._switch_surprise``).
        switch_alarm_nats: the switch surprise that counts as the residual detector's alarm
            (9 nats: a switch pattern the sensor's own rate makes rarer than about 1e-4).

    Value mixture (``kernel.py`` section of that name):
        mixture_components: components per sensor (values it takes: set points, levels).
        mixture_gate: a reading further than this many spreads from every component opens a
            new one (in place of the lightest).
        mixture_alpha: weight of one reading in the components' weights, and of one normal
            reading in the comparison of the mixture with the forecast band.
        mixture_margin: nats per normal reading by which the mixture must out-explain the
            forecast band before the sensor is judged by it.

    Long-run forecast (the seasonal profile; ``kernel.py`` section of that name). Time-based,
    so they mean the same at any reporting rate:
        profile_bins: time-of-day bins per seasonal period (96: 15 minutes of a day).
        profile_weight: weight of one new period's visit in a bin's mean (0.2: about the last
            five days count).
        profile_level_tau_s: time constant of the slow level the profile is measured from (two
            days: a one-day level partly follows a drift or a shift of a few hours and carries it
            into tomorrow's forecast; chosen on training-side simulations, docs/ml/README.md).
        profile_error_tau_s: time constant of the mean squared day-ahead errors that choose
            between the profile and the flat level, and of the deviations' autocorrelation.
        profile_mean_tau_s: time constant of the long mean that a sensor without a daily shape
            is forecast to return to, and of the autocovariances that measure how fast.
        profile_harmonics: harmonics of the period that a forecast's profile is shrunk towards
            as far as its bins' roughness looks like noise (``forecaster.smooth_profile``;
            0 = the bins as learned).
        profile_quantile_step: log-domain step of the online |error| quantiles (per bin's
            visit, i.e. per measured error) that set the long-run interval half-widths.
        profile_clip: the most one visit may move its bin once the bin is past its first
            visits, in multiples of the sensor's 80 % day-ahead half-width (a robust,
            Huber-type update; 0 = unclipped).
        profile_ready: day-ahead errors a sensor must have measured before forecasts use the
            long-run forecast (before that: the AR path with the trainer's interval calibration).
        profile_shapeless_noise / profile_shapeless_share: when a day counts as having no
            shape, so that a sensor is served its returning level even where its profile erred
            a little less a day ahead (``Scorer.serves_profile``): its profile's bins vary
            across the day by less than ``profile_shapeless_noise`` times the noise a bin
            carries (its day-ahead mean squared error times w / (2 - w) for visit weight w;
            about 1 for a day without a shape), *and* by less than ``profile_shapeless_share``
            of the lag-1 autocovariance of its readings about their long mean (the slow variance
            a wandering level has; a daily shape is most of it). 0 in either: the errors alone
            choose.
    """

    warmup_readings: int = 100
    max_sensors: int = 100_000

    rls_forgetting: float = 0.995
    rls_prior_var: float = 1.0
    level_alpha: float = 0.02
    scale_alpha: float = 0.01
    residual_alpha: float = 0.03
    band_z80: float = 1.2816
    band_z95: float = 1.9600
    band_z: float = 4.0
    clean_z: float = 2.0
    gap_factor: float = 3.0
    gap_cap: float = 100.0

    short_window: int = 10
    feature_clip: float = 10.0
    hst_trees: int = 16
    hst_height: int = 6
    hst_window: int = 100
    calib_alpha: float = 0.01

    z_alarm_residual: float = 5.0
    var_alpha: float = 0.3
    var_cap: float = 9.0
    var_alarm: float = 6.0
    z_alarm_if: float = 8.0
    z_alarm_hst: float = 10.0
    score_slope: float = 1.5
    threshold: float = 0.5

    max_alarm_rate: float = 0.005
    alarm_rate_alpha: float = 0.2
    cusum_k: float = 0.5
    cusum_h: float = 12.0
    adapt_after: int = 20
    adapt_consistency: float = 2.0

    regimes: int = 6
    regime_z: float = 4.0
    regime_separation: float = 6.0
    regime_known: float = 5.0
    regime_lived: float = 100.0
    regime_frequent: float = 0.02
    regime_min_readings: int = 5
    regime_memory_s: float = 3 * 86400.0
    regime_rate_alpha: float = 0.001
    switch_alarm_nats: float = 9.0

    mixture_components: int = 6
    mixture_gate: float = 4.0
    mixture_alpha: float = 0.01
    mixture_margin: float = 1.0

    profile_bins: int = 96
    profile_weight: float = 0.2
    profile_level_tau_s: float = 2 * 86400.0
    profile_error_tau_s: float = 86400.0
    profile_quantile_step: float = 0.02
    profile_clip: float = 1.5
    profile_mean_tau_s: float = 3 * 86400.0
    profile_harmonics: int = 2
    profile_ready: int = 24
    profile_shapeless_noise: float = 2.0
    profile_shapeless_share: float = 0.15

    seed: int = 7
    # Not part of the hash (a dict is unhashable), so a config can still key a cache.
    detector_weights: dict[str, float] = field(
        hash=False,
        default_factory=lambda: {
            "forecast_residual": 1.0,
            "isolation_forest": 1.0,
            "half_space_trees": 1.0,
        },
    )

    def __post_init__(self) -> None:
        if not 0.5 < self.rls_forgetting <= 1.0:
            raise ValueError("rls_forgetting must be in (0.5, 1]")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError("threshold must be in (0, 1)")
        if self.warmup_readings < 1 or self.short_window < 2 or self.hst_window < 2:
            raise ValueError("warmup_readings >= 1, short_window >= 2, hst_window >= 2")
        if self.hst_height < 1 or self.hst_trees < 1:
            raise ValueError("hst_height and hst_trees must be >= 1")
        if self.regimes < 2 or self.regime_z <= 0 or self.regime_memory_s <= 0:
            raise ValueError("regimes >= 2, regime_z > 0 and regime_memory_s > 0")
        if self.mixture_components < 1 or self.mixture_gate <= 0:
            raise ValueError("mixture_components >= 1 and mixture_gate > 0")
        if not 0.0 < self.mixture_alpha < 1.0:
            raise ValueError("mixture_alpha must be in (0, 1)")
        if self.profile_bins < 1 or not 0.0 < self.profile_weight <= 1.0:
            raise ValueError("profile_bins >= 1 and profile_weight in (0, 1]")
        if (
            min(self.profile_level_tau_s, self.profile_error_tau_s, self.profile_mean_tau_s) <= 0
            or self.profile_quantile_step <= 0
        ):
            raise ValueError("profile time constants and quantile step must be > 0")
        if min(self.profile_clip, self.profile_shapeless_noise, self.profile_shapeless_share) < 0:
            raise ValueError("profile_clip and profile_shapeless_* must be >= 0")
        if self.profile_harmonics < 0 or 2 * self.profile_harmonics + 2 > self.profile_bins:
            raise ValueError("profile_harmonics must be >= 0 and leave bins to fit them")


def apply_overrides(config: ScoringConfig, overrides: Mapping[str, object]) -> ScoringConfig:
    """``config`` with ``overrides`` (field name -> value, as decoded from JSON) applied.

    Every refusal is a ``ValueError`` that names the key: an unknown field, a value of the wrong
    type, a non-finite number, an unknown detector in ``detector_weights`` (merged key-wise
    with the weights of ``config``), or a value ``ScoringConfig`` itself refuses.

    >>> apply_overrides(ScoringConfig(), {"profile_level_tau_s": 86400}).profile_level_tau_s
    86400.0
    >>> apply_overrides(ScoringConfig(), {"treshold": 0.6})
    Traceback (most recent call last):
    ...
    ValueError: unknown scoring setting 'treshold' (did you mean 'threshold'?)
    """
    known = {f.name for f in fields(ScoringConfig)}
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown scoring setting {key!r}{hint}")
        if key == "detector_weights":
            changes[key] = _weights(config.detector_weights, value)
        else:
            changes[key] = _number(key, value, integer=isinstance(getattr(config, key), int))
    try:
        return replace(config, **changes)
    except ValueError as exc:  # __post_init__ checks some fields together: name what was set
        raise ValueError(f"scoring settings {', '.join(changes)} refused: {exc}") from None


_MAX_INT = 2**31 - 1


def _number(key: str, value: object, *, integer: bool) -> int | float:
    # bool is an int to Python but never a tunable here. Counts and window lengths stay ints
    # (a fraction of a reading means nothing); a float field takes 86400 as well as 86400.0.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"scoring setting {key!r} must be a number, got {value!r}")
    if integer:
        if not isinstance(value, int):
            raise ValueError(f"scoring setting {key!r} must be an integer, got {value!r}")
        # Counts, sizes and the seed end up in int64 arrays and numba code: refuse here, with
        # the key named, what would otherwise overflow later, at model load.
        if abs(value) > _MAX_INT:
            raise ValueError(f"scoring setting {key!r} must be at most {_MAX_INT}, got {value}")
        return value
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        number = math.inf
    if not math.isfinite(number):  # Python's JSON reader lets NaN and Infinity through
        raise ValueError(f"scoring setting {key!r} must be finite, got {value!r}")
    return number


def _weights(current: Mapping[str, float], value: object) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise ValueError(f"scoring setting 'detector_weights' must be an object, got {value!r}")
    merged = dict(current)
    for name, weight in value.items():
        if name not in current:
            raise ValueError(
                f"unknown detector {name!r} in detector_weights (known: {', '.join(current)})"
            )
        number = _number(f"detector_weights.{name}", weight, integer=False)
        if number < 0:
            raise ValueError(f"scoring setting 'detector_weights.{name}' must be >= 0")
        merged[name] = number
    return merged
