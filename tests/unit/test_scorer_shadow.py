"""The shadow tally: agreement, forecast errors and would-be alerts of a candidate model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.scoring import Score
from core.scoring.alerts import AlertConfig, AlertMachine
from scorer.models import ShadowTally

T0 = datetime(2026, 11, 25, tzinfo=UTC)


def score(i: int, s: float, expected: float | None) -> Score:
    return Score(
        "s1", T0 + timedelta(seconds=i), 10.0, s, s >= 0.5, 0.5, expected, None, None, {}, True
    )


def test_tally_compares_verdicts_errors_and_alerts() -> None:
    tally = ShadowTally(
        {"anomaly_detector": 3, "forecaster": 2},
        AlertMachine(AlertConfig(open_hits=2, open_window=2)),
    )
    active = [score(0, 0.1, 9.0), score(1, 0.9, 9.0), score(2, 0.1, None), score(3, 0.1, 9.0)]
    candidate = [score(0, 0.1, 12.0), score(1, 0.9, 8.0), score(2, 0.9, 8.0), score(3, 0.2, 10.0)]
    tally.add(active, candidate, "anomaly_detector:v3")
    tally.active_alerts = 0
    [(n1, det), (n2, fc)] = tally.stats()
    assert (n1, n2) == ("anomaly_detector", "forecaster") and (det.version, fc.version) == (3, 2)
    assert det.n_scored == 4 and det.agreement == 0.75
    # Errors only where both forecast: |10-9|×3 vs |10-12| + |10-8| + |10-10|.
    assert det.active_error == 1.0 and det.candidate_error == 4.0 / 3
    assert det.candidate_alerts == 1 and det.active_alerts == 0  # 2 of 2 hot at t=1, t=2


def test_empty_tally_has_no_figures_yet() -> None:
    [(_, st)] = ShadowTally({"forecaster": 2}, AlertMachine()).stats()
    assert st.n_scored == 0 and st.agreement is None and st.active_error is None
