"""The engineered features the Isolation Forest and the half-space trees see.

Every feature is *scale-free*: a difference divided by a scale learned from the same sensor's
normal readings, or a log-ratio of two such scales. That is what lets one forest, trained once,
serve a thermometer in degrees and a power meter in watts. All are clipped to
``[-ScoringConfig.feature_clip, +feature_clip]``, which are also the half-space trees' limits.
"""

from __future__ import annotations

FEATURE_NAMES: list[str] = [
    # (value - slow level) / long-run scale: where the value sits in the sensor's normal range.
    "value_z",
    # (value - one-step forecast) / residual sigma: the forecaster's surprise, signed.
    "residual_z",
    # (value - short rolling mean) / long-run scale: deviation from the last few readings.
    "rolling_z",
    # first difference / typical |first difference| (gap-adjusted): sudden jumps.
    "diff_z",
    # log(short-window mean |diff| / long-run mean |diff|): noise bursts (> 0), frozen signal (< 0).
    "spread_log_ratio",
    # run of identical values * -log(learned probability of an exact repeat): the surprise of a
    # frozen value, small for integer-quantised sensors whose value legitimately repeats.
    "run_surprise",
]
