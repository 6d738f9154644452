"""The pure simulator API: determinism, realistic shapes, and labelled incidents that match."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from core.topics import is_valid_sensor_id
from simulators import (
    ANOMALY_KINDS,
    SensorSpec,
    Simulator,
    make_sensors,
    simulate,
    simulate_labelled,
)
from simulators.anomalies import Injector
from simulators.signals import SENSOR_TYPES, daily_cycle

START = datetime(2026, 3, 1, tzinfo=UTC)


def test_sensor_ids_are_valid_and_cycle_through_types() -> None:
    specs = make_sensors(13)
    assert [s.sensor_id for s in specs[:3]] == ["sim-temp-001", "sim-hum-002", "sim-pres-003"]
    assert all(is_valid_sensor_id(s.sensor_id) for s in specs)
    assert [s.sensor_type for s in specs[:7]] == [*SENSOR_TYPES, "temperature"]
    assert {s.unit for s in specs} == {t.unit for t in SENSOR_TYPES.values()}


def test_explicit_ids_guess_their_type() -> None:
    samples = list(simulate(["boiler-3.temp", "boiler-3.pressure", "pump-7"], 1, start=START))
    assert [(s.reading.sensor_type, s.reading.unit) for s in samples] == [
        ("temperature", "Cel"),
        ("pressure", "hPa"),
        ("pressure", "hPa"),  # no hint in the id: the third type of the cycle
    ]


def test_same_seed_same_samples_and_incidents() -> None:
    a = simulate_labelled(8, 500, seed=3, interval_s=30, start=START, anomaly_rate=0.02)
    b = simulate_labelled(8, 500, seed=3, interval_s=30, start=START, anomaly_rate=0.02)
    c = simulate_labelled(8, 500, seed=4, interval_s=30, start=START, anomaly_rate=0.02)
    assert a == b
    assert a[0] != c[0] and a[1] != c[1]


def test_a_sensor_does_not_depend_on_the_others_or_on_anomalies() -> None:
    def series(sensors: list[SensorSpec], rate: float) -> list[float]:
        return [
            s.reading.value
            for s in simulate(sensors, 200, seed=1, start=START, anomaly_rate=rate)
            if s.reading.sensor_id == "sim-temp-001"
        ]

    alone = series(make_sensors(1), 0.0)
    assert alone == series(make_sensors(6), 0.0)
    noisy = series(make_sensors(1), 0.05)
    # Anomalies alter some readings; the clean signal under them is unchanged.
    same = sum(x == y for x, y in zip(alone, noisy, strict=False))
    assert 0 < same < len(alone)


def test_ticks_are_a_regular_grid_with_sequence_numbers() -> None:
    samples = list(simulate(2, 5, interval_s=0.25, start=START))
    times = [s.reading.time for s in samples if s.reading.sensor_id == "sim-temp-001"]
    assert times == [START + timedelta(milliseconds=250 * k) for k in range(5)]
    assert [s.reading.seq for s in samples[::2]] == [0, 1, 2, 3, 4]


def test_default_start_ends_the_run_now() -> None:
    before = datetime.now(UTC)
    last = list(simulate(1, 10, interval_s=60))[-1].reading.time
    assert before - timedelta(seconds=2) <= last <= datetime.now(UTC)


def day_of(sensor: str, interval_s: float = 300) -> np.ndarray:
    xs = [
        s.reading.value
        for s in simulate(6, int(86400 / interval_s), seed=2, interval_s=interval_s, start=START)
        if s.reading.sensor_id == sensor
    ]
    return np.array(xs)


def test_temperature_has_a_daily_cycle_and_humidity_moves_against_it() -> None:
    temp, hum = day_of("sim-temp-001"), day_of("sim-hum-002")
    hours = np.arange(len(temp)) * 300 / 3600
    assert temp[(hours > 13) & (hours < 17)].mean() > temp[(hours > 1) & (hours < 5)].mean() + 4
    assert np.corrcoef(temp, hum)[0, 1] < -0.5
    assert hum.min() >= 0 and hum.max() <= 100
    cycle = [daily_cycle(START + timedelta(hours=h)) for h in (3, 15)]
    assert cycle == pytest.approx([-1.0, 1.0])


def test_other_shapes_are_plausible() -> None:
    pres, vib, power, flow = (
        day_of(s) for s in ("sim-pres-003", "sim-vib-004", "sim-pow-005", "sim-flow-006")
    )
    assert pres.min() > 980 and pres.max() < 1045 and np.ptp(pres) < 20
    hours = np.arange(len(vib)) * 300 / 3600
    assert vib[(hours > 8) & (hours < 20)].mean() > 10 * vib[hours < 5].mean()
    assert len(np.unique(np.round(power / 200))) >= 3  # steps between load levels
    assert flow.min() >= 0 and flow[(hours > 6) & (hours < 8)].mean() > flow[hours < 4].mean()


def test_incidents_label_exactly_the_readings_they_alter() -> None:
    sim = Simulator(make_sensors(6), seed=9, interval_s=10, start=START, anomaly_rate=0.03)
    samples = list(sim.samples(2000))
    incidents = sim.close()
    assert {i.kind for i in incidents} == set(ANOMALY_KINDS)
    by_key = {(s.reading.sensor_id, s.reading.time): s for s in samples}
    for inc in incidents:
        k = int((inc.end - inc.start).total_seconds() // 10) + 1
        times = [inc.start + timedelta(seconds=10 * j) for j in range(k)]
        inside = [by_key.get((inc.sensor_id, t)) for t in times]
        if inc.kind == "dropout":
            assert inside == [None] * k
        else:
            assert all(s is not None and s.anomaly == inc.kind for s in inside)
        if inc.kind == "stuck":
            assert len({s.reading.value for s in inside if s}) == 1
    flagged = sum(1 for s in samples if s.anomaly)
    assert flagged == sum(
        int((i.end - i.start).total_seconds() // 10) + 1 for i in incidents if i.kind != "dropout"
    )


def test_spikes_and_dips_stand_out_by_many_noise_scales() -> None:
    rng = np.random.default_rng(0)
    inj = Injector("s", rng, rate=1.0, scale=0.5, kinds=("spike", "dip"))
    for k in range(200):
        value, kind = inj.apply(START + timedelta(seconds=k), 20.0)
        assert value is not None and kind in ("spike", "dip")
        assert (value - 20.0 >= 4.0) if kind == "spike" else (20.0 - value >= 4.0)
    assert len(inj.finished) == 200


@pytest.mark.parametrize(
    "kwargs",
    [
        {"interval_s": 0.0},
        {"interval_s": float("nan")},
        {"anomaly_rate": 1.5},
        {"start": datetime(2026, 1, 1)},  # noqa: DTZ001 - naive on purpose
    ],
)
def test_invalid_parameters(kwargs: dict[str, object]) -> None:
    params: dict[str, object] = {"start": START} | kwargs
    with pytest.raises(ValueError):
        Simulator(make_sensors(1), **params)  # type: ignore[arg-type]


def test_invalid_sensors() -> None:
    with pytest.raises(ValueError):
        make_sensors(0)
    with pytest.raises(ValueError):
        Simulator([*make_sensors(1), *make_sensors(1)], start=START)
    with pytest.raises(ValueError):
        SensorSpec.of("ok-id", "radiation")


def test_module_docstring_examples_run() -> None:
    import doctest

    import simulators.simulation

    result = doctest.testmod(simulators.simulation)
    assert result.attempted >= 3 and result.failed == 0
