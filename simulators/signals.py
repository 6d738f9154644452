"""Realistic, seeded signal models, one per sensor type.

Each model is a small state machine: ``value(t)`` returns the clean (anomaly-free) value of the
sensor at the simulated time ``t`` and advances its own state. Models draw only from the
``numpy.random.Generator`` they are given, so a sensor's series depends on its own seed alone —
adding a sensor to a run does not change the others.

The shapes are the ones a detector meets in a plant:

* ``temperature`` — a daily cycle (coolest at 03:00 UTC, warmest at 15:00) plus slowly
  wandering AR(1) weather noise and a little measurement noise;
* ``humidity`` — the same daily cycle with the opposite sign (relative humidity falls as the
  air warms), clipped to 0–100 %RH;
* ``pressure`` — a mean-reverting random walk (Ornstein–Uhlenbeck) around 1013 hPa;
* ``vibration`` — RMS acceleration of a machine that runs from 06:00 to 22:00 and idles at
  night, log-normal around its running level;
* ``power`` — a load that steps between a few levels at random times, with small ripple;
* ``flow`` — water demand with a morning and an evening peak, never negative.

``noise_scale`` is the typical short-term variation of each type; anomaly magnitudes are
expressed in multiples of it so injected incidents are equally visible on every type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np

SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True, slots=True)
class SensorType:
    """Static description of one sensor type: its SenML unit and typical variation."""

    name: str
    unit: str
    abbrev: str
    noise_scale: float


SENSOR_TYPES: dict[str, SensorType] = {
    t.name: t
    for t in (
        SensorType("temperature", "Cel", "temp", 0.5),
        SensorType("humidity", "%RH", "hum", 2.0),
        SensorType("pressure", "hPa", "pres", 1.0),
        SensorType("vibration", "m/s2", "vib", 0.15),
        SensorType("power", "W", "pow", 120.0),
        SensorType("flow", "l/s", "flow", 0.4),
    )
}


class Signal(Protocol):
    """A clean signal: the value at simulated time ``t`` (called with increasing ``t``)."""

    def value(self, t: datetime) -> float: ...


def day_fraction(t: datetime) -> float:
    """Position of ``t`` within its UTC day, in [0, 1)."""
    return (t.timestamp() % SECONDS_PER_DAY) / SECONDS_PER_DAY


def daily_cycle(t: datetime) -> float:
    """-1 at 03:00 UTC, +1 at 15:00 UTC: the shared shape of temperature and humidity."""
    return math.sin(2.0 * math.pi * (day_fraction(t) - 0.375))


class _Ar1:
    """AR(1) noise whose innovation scales with the time step, so it wanders the same amount
    per hour whatever the sampling rate."""

    def __init__(self, rng: np.random.Generator, sigma: float, tau_s: float) -> None:
        self.rng = rng
        self.sigma = sigma
        self.tau_s = tau_s
        self.x = 0.0
        self.last_t: float | None = None

    def step(self, t: datetime) -> float:
        ts = t.timestamp()
        dt = 1.0 if self.last_t is None else max(ts - self.last_t, 1e-3)
        self.last_t = ts
        phi = math.exp(-dt / self.tau_s)
        self.x = phi * self.x + self.sigma * math.sqrt(1.0 - phi * phi) * float(self.rng.normal())
        return self.x


class Temperature:
    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.base = float(rng.uniform(18.0, 24.0))
        self.amplitude = float(rng.uniform(3.0, 6.0))
        self.weather = _Ar1(rng, sigma=0.8, tau_s=3600.0)

    def value(self, t: datetime) -> float:
        return (
            self.base
            + self.amplitude * daily_cycle(t)
            + self.weather.step(t)
            + 0.05 * float(self.rng.normal())
        )


class Humidity:
    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.base = float(rng.uniform(45.0, 60.0))
        self.amplitude = float(rng.uniform(8.0, 15.0))
        self.weather = _Ar1(rng, sigma=2.5, tau_s=3600.0)

    def value(self, t: datetime) -> float:
        v = (
            self.base
            - self.amplitude * daily_cycle(t)
            + self.weather.step(t)
            + 0.3 * float(self.rng.normal())
        )
        return min(100.0, max(0.0, v))


class Pressure:
    """Ornstein–Uhlenbeck: a random walk pulled back towards its mean over about a day."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.mean = float(rng.uniform(1005.0, 1020.0))
        self.x = self.mean
        self.theta_per_s = 1.0 / SECONDS_PER_DAY
        self.sigma_per_sqrt_s = 0.015
        self.last_t: float | None = None

    def value(self, t: datetime) -> float:
        ts = t.timestamp()
        dt = 1.0 if self.last_t is None else max(ts - self.last_t, 1e-3)
        self.last_t = ts
        self.x += self.theta_per_s * (self.mean - self.x) * dt + self.sigma_per_sqrt_s * math.sqrt(
            dt
        ) * float(self.rng.normal())
        return self.x + 0.1 * float(self.rng.normal())


class Vibration:
    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.running_level = float(rng.uniform(0.8, 2.0))
        self.idle_level = 0.05

    def value(self, t: datetime) -> float:
        running = 0.25 <= day_fraction(t) < 22.0 / 24.0
        level = self.running_level if running else self.idle_level
        return level * math.exp(0.08 * float(self.rng.normal()))


class Power:
    """A load that jumps between levels at exponentially distributed times (mean 10 min)."""

    LEVELS = (0.15, 0.4, 0.7, 1.0)

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.rated_w = float(rng.uniform(2000.0, 8000.0))
        self.level = float(rng.choice(self.LEVELS))
        self.next_step_ts: float | None = None
        self.mean_hold_s = 600.0

    def value(self, t: datetime) -> float:
        ts = t.timestamp()
        if self.next_step_ts is None:
            self.next_step_ts = ts + float(self.rng.exponential(self.mean_hold_s))
        while ts >= self.next_step_ts:
            self.level = float(self.rng.choice(self.LEVELS))
            self.next_step_ts += float(self.rng.exponential(self.mean_hold_s))
        return self.rated_w * self.level + 30.0 * float(self.rng.normal())


class Flow:
    """Demand with peaks at 07:00 and 19:00 UTC over a night-time base flow."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.base = float(rng.uniform(0.5, 1.5))
        self.peak = float(rng.uniform(2.0, 5.0))
        self.noise = _Ar1(rng, sigma=0.2, tau_s=300.0)

    def value(self, t: datetime) -> float:
        hour = day_fraction(t) * 24.0
        demand = sum(math.exp(-(((hour - h + 12.0) % 24.0 - 12.0) ** 2) / 2.0) for h in (7.0, 19.0))
        return max(
            0.0,
            self.base + self.peak * demand + self.noise.step(t) + 0.05 * float(self.rng.normal()),
        )


_MODELS: dict[str, type[Temperature | Humidity | Pressure | Vibration | Power | Flow]] = {
    "temperature": Temperature,
    "humidity": Humidity,
    "pressure": Pressure,
    "vibration": Vibration,
    "power": Power,
    "flow": Flow,
}


def make_signal(sensor_type: str, rng: np.random.Generator) -> Signal:
    """The clean signal model of ``sensor_type`` (one of ``SENSOR_TYPES``)."""
    try:
        return _MODELS[sensor_type](rng)
    except KeyError:
        raise ValueError(
            f"unknown sensor type {sensor_type!r}; known: {', '.join(SENSOR_TYPES)}"
        ) from None
