"""The streaming scorer service: per-sensor anomaly scoring of the live MQTT stream, alerts out.

Run with ``python -m scorer`` or ``sensorpipe score --shard i/N``. The scoring itself is the pure
library ``core.scoring`` (shared with ``backtest`` and the API); this package is the service
around it: MQTT intake, micro-batching off the event loop, warm start, the alert sink, metrics.
"""
