"""Process-wide settings of the long-running services that decode and handle every reading
(the scorer and the ingestor): a garbage collector that stays out of the way, and MQTT clients
that give it nothing to do."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any, cast

import paho.mqtt.client as paho
from paho.mqtt.matcher import MQTTMatcher

# Generation-0 collections every 50,000 container allocations instead of 700 (docs/perf/scorer.md).
GC_GEN0_THRESHOLD = 50_000


def tune_gc() -> None:
    """Make the garbage collector cheap for a process that allocates a Reading (and more) per
    reading: the objects live for one batch and die by reference counting, yet at the default
    threshold they trigger a collection every 700 allocations, each also walking everything
    loaded at start (modules, numba, models). Freezing moves that start-up heap out of the
    collector's sight; the larger threshold lets a batch's short-lived objects die before a
    collection sees them. Measured in the scorer: decode ~40 % and scoring ~20 % cheaper per
    reading. Call once, after the process has imported and loaded what it keeps."""
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


class _TopicCallbacks(MQTTMatcher):
    """paho's per-topic callback registry, minus the lookup's garbage while it is empty.

    paho looks up ``message_callback_add`` callbacks for every PUBLISH it receives
    (``MQTTMatcher.iter_match``), and that lookup builds a closure that refers to itself: one
    reference cycle per message, which only the cyclic collector frees. In the scorer at 5,000
    messages/s that was a 35 ms generation-0 collection (≈ 50,000 dead cycles) every 1.7 s, and
    the slowest alerts of the latency benchmark waited behind it (docs/perf/scorer.md). The
    services register no per-topic callbacks, so the lookup is skipped while there are none;
    registered ones are still found as paho finds them."""

    def iter_match(self, topic: str) -> Iterator[Any]:
        if not self._root._children:
            return iter(())
        return cast(Iterator[Any], super().iter_match(topic))  # type: ignore[no-untyped-call]


def no_garbage_per_message(client: paho.Client) -> None:
    """Keep ``client`` from leaving a reference cycle behind for every message it receives
    (see ``_TopicCallbacks``). Call before any ``message_callback_add``."""
    # Private attribute (paho-mqtt is pinned < 3; tests/unit/test_runtime.py checks it exists).
    if not isinstance(client._on_message_filtered, MQTTMatcher):
        raise TypeError("paho's per-topic callback registry is not where it used to be")
    client._on_message_filtered = _TopicCallbacks()  # type: ignore[no-untyped-call]
