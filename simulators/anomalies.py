"""Labelled anomaly injection: each injected anomaly is an *incident* with a kind, start and end.

An ``Injector`` sits between one sensor's clean signal and its output. While idle it starts an
incident before a reading with probability ``rate`` (so ``rate`` is "incidents started per
reading", e.g. 0.002 ≈ one incident every 500 readings of that sensor); the incident then alters
the next ``length`` readings and is recorded as ground truth once it ends:

============  ======  ===============================================================
kind          length  effect (``s`` = the sensor type's noise scale)
============  ======  ===============================================================
spike         1       one reading raised by 8–15 s
dip           1       one reading lowered by 8–15 s
level_shift   10–60   an offset of ±6–10 s
drift         20–120  an offset growing linearly to ±8–15 s
stuck         10–60   the last good value repeated exactly (a frozen sensor)
noise_burst   5–30    extra Gaussian noise with standard deviation 6 s
dropout       5–30    no readings at all (the device is silent; ``seq`` still advances)
============  ======  ===============================================================

``Incident.start`` and ``Incident.end`` are the times of the first and last affected reading
(inclusive); for a dropout they are the times of the first and last missing reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

ANOMALY_KINDS: tuple[str, ...] = (
    "spike",
    "dip",
    "level_shift",
    "drift",
    "stuck",
    "noise_burst",
    "dropout",
)

# Inclusive ranges of incident length, in readings.
_LENGTHS: dict[str, tuple[int, int]] = {
    "spike": (1, 1),
    "dip": (1, 1),
    "level_shift": (10, 60),
    "drift": (20, 120),
    "stuck": (10, 60),
    "noise_burst": (5, 30),
    "dropout": (5, 30),
}


@dataclass(frozen=True, slots=True)
class Incident:
    """Ground truth of one injected anomaly (one row of the labels CSV)."""

    sensor_id: str
    kind: str
    start: datetime
    end: datetime


@dataclass(slots=True)
class _Active:
    kind: str
    length: int
    magnitude: float
    held: float
    done: int = 0
    start: datetime | None = None
    last: datetime | None = None


class Injector:
    """Turns one sensor's clean values into observed ones, injecting and recording incidents."""

    def __init__(
        self,
        sensor_id: str,
        rng: np.random.Generator,
        *,
        rate: float,
        scale: float,
        kinds: tuple[str, ...] = ANOMALY_KINDS,
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("anomaly rate must be within [0, 1]")
        unknown = set(kinds) - set(ANOMALY_KINDS)
        if unknown:
            raise ValueError(f"unknown anomaly kinds: {sorted(unknown)}")
        self.sensor_id = sensor_id
        self.rng = rng
        self.rate = rate
        self.scale = scale
        self.kinds = kinds
        self.active: _Active | None = None
        self.last_good: float | None = None
        self.finished: list[Incident] = []

    def apply(self, t: datetime, clean: float) -> tuple[float | None, str | None]:
        """The observed value at ``t`` (``None`` = nothing sent) and the incident kind, if any."""
        if self.active is None and self.rate > 0.0 and self.kinds and self.rng.random() < self.rate:
            self.active = self._start(clean)
        inc = self.active
        if inc is None:
            self.last_good = clean
            return clean, None
        value = self._effect(inc, clean)
        inc.start = inc.start or t
        inc.last = t
        inc.done += 1
        if inc.done >= inc.length:
            self._finish()
        return value, inc.kind

    def close(self) -> None:
        """End an incident cut short by the end of the run at its last affected reading."""
        if self.active is not None and self.active.start is not None:
            self._finish()
        self.active = None

    def _start(self, clean: float) -> _Active:
        kind = str(self.rng.choice(self.kinds))
        lo, hi = _LENGTHS[kind]
        length = int(self.rng.integers(lo, hi + 1))
        sign = 1.0 if self.rng.random() < 0.5 else -1.0
        if kind in ("spike", "dip"):
            magnitude = float(self.rng.uniform(8.0, 15.0)) * (1.0 if kind == "spike" else -1.0)
        elif kind == "level_shift":
            magnitude = sign * float(self.rng.uniform(6.0, 10.0))
        elif kind == "drift":
            magnitude = sign * float(self.rng.uniform(8.0, 15.0))
        else:
            magnitude = 6.0
        held = self.last_good if self.last_good is not None else clean
        return _Active(kind, length, magnitude * self.scale, held)

    def _effect(self, inc: _Active, clean: float) -> float | None:
        if inc.kind in ("spike", "dip", "level_shift"):
            return clean + inc.magnitude
        if inc.kind == "drift":
            return clean + inc.magnitude * (inc.done + 1) / inc.length
        if inc.kind == "stuck":
            return inc.held
        if inc.kind == "noise_burst":
            return clean + inc.magnitude * float(self.rng.normal())
        return None  # dropout

    def _finish(self) -> None:
        inc = self.active
        assert inc is not None and inc.start is not None and inc.last is not None  # noqa: S101
        self.finished.append(Incident(self.sensor_id, inc.kind, inc.start, inc.last))
        self.active = None
