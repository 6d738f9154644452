"""The pure simulation API: seeded sensor readings with labelled anomalies, no I/O.

This is what datasets, notebooks, benchmarks and end-to-end tests call; ``sensorpipe simulate``
is a thin shell around it that publishes or writes the samples.

Quick use::

    >>> from datetime import UTC, datetime
    >>> from simulators import simulate
    >>> start = datetime(2026, 1, 1, tzinfo=UTC)
    >>> samples = list(simulate(3, 10, seed=7, interval_s=60, start=start, anomaly_rate=0.0))
    >>> len(samples), samples[0].reading.sensor_id, samples[0].anomaly
    (30, 'sim-temp-001', None)
    >>> samples == list(simulate(3, 10, seed=7, interval_s=60, start=start, anomaly_rate=0.0))
    True

``simulate(sensors, n, *, seed, interval_s, start, anomaly_rate)`` yields ``Sample(reading,
anomaly)`` pairs — a ``core.wire.Reading`` and the kind of the incident affecting it (or
``None``) — tick by tick: all sensors' readings at ``start``, then at ``start + interval_s``, and
so on for ``n`` ticks (``n=None`` runs forever). Readings lost to a ``dropout`` incident are not
yielded (their ``seq`` numbers are skipped, as a real gap would show).

When the ground truth is needed too, use ``Simulator`` directly::

    sim = Simulator(make_sensors(5), seed=1, interval_s=1.0, start=start, anomaly_rate=0.01)
    samples = list(sim.samples(1000))
    incidents = sim.close()          # every Incident(sensor_id, kind, start, end), dropouts too

Determinism: the same sensors, seed, interval, start and anomaly rate give identical samples and
incidents. Each sensor draws from its own generators, seeded from ``(seed, sensor_id)``, one for
the clean signal and one for anomalies, so adding a sensor or changing the anomaly rate does not
change the other sensors' clean signals.

Sensors are ``SensorSpec(sensor_id, sensor_type, unit)``; ``make_sensors(n)`` names them
``sim-<type>-<NNN>`` (``sim-temp-001``, ``sim-hum-002``, …) cycling through the sensor types of
``simulators.signals``.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import numpy as np

from core.topics import check_sensor_id
from core.wire import Reading
from simulators.anomalies import ANOMALY_KINDS, Incident, Injector
from simulators.signals import SENSOR_TYPES, Signal, make_signal

TYPE_ORDER: tuple[str, ...] = tuple(SENSOR_TYPES)
VALUE_DECIMALS = 4


@dataclass(frozen=True, slots=True)
class SensorSpec:
    sensor_id: str
    sensor_type: str
    unit: str

    @classmethod
    def of(cls, sensor_id: str, sensor_type: str) -> SensorSpec:
        check_sensor_id(sensor_id)
        if sensor_type not in SENSOR_TYPES:
            raise ValueError(f"unknown sensor type {sensor_type!r}")
        return cls(sensor_id, sensor_type, SENSOR_TYPES[sensor_type].unit)


class Sample(NamedTuple):
    """One simulated reading and the kind of the incident affecting it (``None`` if normal)."""

    reading: Reading
    anomaly: str | None


def make_sensors(
    n: int, *, prefix: str = "sim", types: Sequence[str] = TYPE_ORDER
) -> list[SensorSpec]:
    """``n`` sensors ``<prefix>-<abbrev>-<NNN>`` cycling through ``types``."""
    if n < 1:
        raise ValueError("at least one sensor is needed")
    out = []
    for i in range(n):
        st = SENSOR_TYPES[types[i % len(types)]]
        out.append(SensorSpec.of(f"{prefix}-{st.abbrev}-{i + 1:03d}", st.name))
    return out


def sensor_for_id(sensor_id: str, index: int = 0) -> SensorSpec:
    """A spec for an explicit id: the type is guessed from the id (``boiler-3.temp`` is a
    temperature), else taken by ``index`` from the type cycle."""
    low = sensor_id.lower()
    for st in SENSOR_TYPES.values():
        if st.name in low or st.abbrev in low:
            return SensorSpec.of(sensor_id, st.name)
    return SensorSpec.of(sensor_id, TYPE_ORDER[index % len(TYPE_ORDER)])


def default_start(n: int | None, interval_s: float, now: datetime | None = None) -> datetime:
    """A start so that ``n`` ticks end now (or now, for an endless run), on a whole second."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    return now if n is None else now - timedelta(seconds=interval_s * max(n - 1, 0))


class _SensorState:
    def __init__(
        self, spec: SensorSpec, seed: int, anomaly_rate: float, kinds: tuple[str, ...]
    ) -> None:
        key = zlib.crc32(spec.sensor_id.encode())
        self.spec = spec
        self.signal: Signal = make_signal(spec.sensor_type, np.random.default_rng([seed, key, 0]))
        self.injector = Injector(
            spec.sensor_id,
            np.random.default_rng([seed, key, 1]),
            rate=anomaly_rate,
            scale=SENSOR_TYPES[spec.sensor_type].noise_scale,
            kinds=kinds,
        )


class Simulator:
    """Seeded readings of several sensors on a regular grid, with labelled anomaly injection."""

    def __init__(
        self,
        sensors: Sequence[SensorSpec],
        *,
        seed: int = 0,
        interval_s: float = 1.0,
        start: datetime,
        anomaly_rate: float = 0.0,
        kinds: tuple[str, ...] = ANOMALY_KINDS,
    ) -> None:
        if not sensors:
            raise ValueError("at least one sensor is needed")
        if len({s.sensor_id for s in sensors}) != len(sensors):
            raise ValueError("sensor ids must be unique")
        if not (math.isfinite(interval_s) and interval_s >= 0.001):
            raise ValueError("interval_s must be at least 1 ms")
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        # Whole milliseconds: timestamps stay exact on the wire and in CSV files.
        self.interval = timedelta(milliseconds=round(interval_s * 1000))
        self.start = start.astimezone(UTC)
        self.sensors = list(sensors)
        self._states = [_SensorState(s, seed, anomaly_rate, kinds) for s in sensors]
        self._next_tick = 0
        self._closed = False

    @property
    def interval_s(self) -> float:
        return self.interval.total_seconds()

    def time_of(self, tick: int) -> datetime:
        return self.start + tick * self.interval

    def tick(self) -> list[Sample]:
        """The samples of every sensor at the next tick (fewer when a dropout is under way)."""
        if self._closed:
            raise RuntimeError("simulator is closed")
        k = self._next_tick
        self._next_tick += 1
        t = self.time_of(k)
        out: list[Sample] = []
        for st in self._states:
            clean = round(st.signal.value(t), VALUE_DECIMALS)
            value, kind = st.injector.apply(t, clean)
            if value is None:
                continue
            reading = Reading(
                sensor_id=st.spec.sensor_id,
                time=t,
                value=round(value, VALUE_DECIMALS),
                sensor_type=st.spec.sensor_type,
                unit=st.spec.unit,
                seq=k,
            )
            out.append(Sample(reading, kind))
        return out

    def samples(self, n: int | None) -> Iterator[Sample]:
        """``n`` more ticks of samples (``None``: without end)."""
        done = 0
        while n is None or done < n:
            yield from self.tick()
            done += 1

    @property
    def incidents(self) -> list[Incident]:
        """Incidents finished so far, ordered by start time then sensor."""
        found = [i for st in self._states for i in st.injector.finished]
        return sorted(found, key=lambda i: (i.start, i.sensor_id))

    def close(self) -> list[Incident]:
        """End the run: incidents still under way end at their last affected reading."""
        if not self._closed:
            for st in self._states:
                st.injector.close()
            self._closed = True
        return self.incidents


def as_specs(sensors: int | Sequence[SensorSpec | str]) -> list[SensorSpec]:
    """A sensor count, explicit ids, or specs → specs."""
    if isinstance(sensors, int):
        return make_sensors(sensors)
    return [s if isinstance(s, SensorSpec) else sensor_for_id(s, i) for i, s in enumerate(sensors)]


def simulate(
    sensors: int | Sequence[SensorSpec | str],
    n: int | None,
    *,
    seed: int = 0,
    interval_s: float = 1.0,
    start: datetime | None = None,
    anomaly_rate: float = 0.0,
) -> Iterator[Sample]:
    """Yield ``n`` ticks of samples of ``sensors`` (see the module docstring).

    ``start=None`` ends the run at the current time (so the readings are fresh enough for a live
    pipeline); pass an explicit ``start`` for reproducible timestamps.
    """
    specs = as_specs(sensors)
    begin = start if start is not None else default_start(n, interval_s)
    sim = Simulator(specs, seed=seed, interval_s=interval_s, start=begin, anomaly_rate=anomaly_rate)
    yield from sim.samples(n)


def simulate_labelled(
    sensors: int | Sequence[SensorSpec | str],
    n: int,
    *,
    seed: int = 0,
    interval_s: float = 1.0,
    start: datetime | None = None,
    anomaly_rate: float = 0.0,
) -> tuple[list[Sample], list[Incident]]:
    """All samples of ``n`` ticks plus the ground-truth incidents (dropouts included)."""
    specs = as_specs(sensors)
    begin = start if start is not None else default_start(n, interval_s)
    sim = Simulator(specs, seed=seed, interval_s=interval_s, start=begin, anomaly_rate=anomaly_rate)
    samples = list(sim.samples(n))
    return samples, sim.close()
