"""Sensor simulator: realistic seeded signals, labelled anomaly injection, MQTT publishing.

The pure API (no I/O) is ``simulate`` / ``simulate_labelled`` / ``Simulator`` — see
``simulators.simulation`` for the contract; ``sensorpipe simulate`` publishes or writes what it
produces. This package imports ``core`` only.
"""

from __future__ import annotations

from simulators.anomalies import ANOMALY_KINDS, Incident
from simulators.signals import SENSOR_TYPES, SensorType
from simulators.simulation import (
    Sample,
    SensorSpec,
    Simulator,
    make_sensors,
    sensor_for_id,
    simulate,
    simulate_labelled,
)

__all__ = [
    "ANOMALY_KINDS",
    "SENSOR_TYPES",
    "Incident",
    "Sample",
    "SensorSpec",
    "SensorType",
    "Simulator",
    "make_sensors",
    "sensor_for_id",
    "simulate",
    "simulate_labelled",
]
