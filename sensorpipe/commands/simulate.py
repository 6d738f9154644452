"""``sensorpipe simulate``: publish (or write as CSV) sensor readings with labelled anomalies.

Examples::

    sensorpipe simulate --sensors 10 --rate 2 --duration 60            # live, to MQTT_URL
    sensorpipe simulate --sensors boiler-3.temp,boiler-3.pressure --count 100 --qos 1
    sensorpipe simulate --sensors 20 --count 10080 --rate 0.0166667 --start 2026-01-01T00:00:00Z \\
        --anomaly-rate 0.002 --out week.csv --labels week-labels.csv          # a dataset

Timing: ``--rate`` is readings per second *per sensor*; each sensor's readings are
``1/rate`` seconds apart in the data. Without ``--start`` the run is live: ticks are paced by the
wall clock and stamped with the current time. With ``--start`` the timestamps start there and
nothing is paced — a backfill is sent (or written) as fast as acknowledgements allow.
``--count`` is the number of ticks (readings per sensor, dropouts aside); ``--duration`` is
``duration × rate`` ticks; with neither, a live run goes on until Ctrl-C / SIGTERM, then flushes
and prints its summary. The exit status is 1 if any reading failed.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simulators.publisher import PayloadFormat, Publisher
    from simulators.simulation import SensorSpec, Simulator

HELP = "simulate sensors: publish readings over MQTT (or write CSV) with labelled anomalies"


def _start_time(text: str) -> datetime:
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise argparse.ArgumentTypeError("--start needs a UTC offset, e.g. 2026-01-01T00:00:00Z")
    return t.astimezone(UTC)


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        v = kind(text)
        if not (math.isfinite(v) and v > 0):
            raise argparse.ArgumentTypeError(f"{text!r} must be positive")
        return v

    return parse


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sensors",
        default="5",
        help="number of sensors (sim-temp-001, sim-hum-002, ...) or a comma-separated "
        "list of sensor ids (type guessed from the id) (default: 5)",
    )
    p.add_argument(
        "--prefix",
        default="sim",
        help="id prefix of numbered sensors: <prefix>-temp-001, ... (default: sim)",
    )
    p.add_argument(
        "--rate",
        type=_positive(float),
        default=1.0,
        help="readings per second per sensor (default: 1)",
    )
    n = p.add_mutually_exclusive_group()
    n.add_argument("--count", type=_positive(int), help="ticks = readings per sensor")
    n.add_argument(
        "--duration", type=_positive(float), help="seconds of data (ticks = duration*rate)"
    )
    p.add_argument("--seed", type=int, default=0, help="same seed (and --start) => same data")
    p.add_argument(
        "--start",
        type=_start_time,
        help="timestamp of the first tick (RFC 3339); disables pacing (backfill)",
    )
    p.add_argument(
        "--anomaly-rate",
        type=float,
        default=0.0,
        help="probability per reading that an incident starts on an idle sensor",
    )
    p.add_argument("--labels", help="write the injected incidents here (sensor_id,kind,start,end)")
    p.add_argument("--out", help="write readings to this CSV instead of publishing")
    p.add_argument("--broker", help="mqtt://user:pass@host:port (default: $MQTT_URL)")
    p.add_argument("--qos", type=int, choices=[0, 1], default=1)
    p.add_argument("--format", choices=["json", "senml"], default="json", dest="fmt")
    p.add_argument(
        "--batch",
        type=_positive(int),
        default=1,
        help="readings per message (one sensor per message; JSON array / SenML pack)",
    )
    p.add_argument(
        "--max-inflight",
        type=_positive(int),
        default=100,
        help="messages awaiting acknowledgement before publishing blocks",
    )
    p.add_argument("--client-id", default=None, help="MQTT client id (default: random)")
    p.add_argument("--quiet", action="store_true", help="no progress line")


def run(args: argparse.Namespace) -> int:
    from core.errors import ConfigError
    from core.logging import configure_logging
    from simulators.simulation import Simulator, default_start

    configure_logging(os.environ.get("LOG_LEVEL", "WARNING").upper(), "text")
    if not 0.0 <= args.anomaly_rate <= 1.0:
        raise ConfigError("--anomaly-rate must be within [0, 1]")
    specs = _sensors(args.sensors, args.prefix)
    interval_s = 1.0 / args.rate
    ticks = (
        args.count
        if args.count
        else (math.ceil(args.duration * args.rate) if args.duration else None)
    )
    if args.out:
        if ticks is None:
            raise ConfigError("--out needs --count or --duration")
        start = args.start or default_start(ticks, interval_s)
        sim = Simulator(
            specs,
            seed=args.seed,
            interval_s=interval_s,
            start=start,
            anomaly_rate=args.anomaly_rate,
        )
        return _write(sim, ticks, args)
    live_start = args.start or datetime.now(UTC).replace(microsecond=0)
    sim = Simulator(
        specs,
        seed=args.seed,
        interval_s=interval_s,
        start=live_start,
        anomaly_rate=args.anomaly_rate,
    )
    return _publish(sim, ticks, paced=args.start is None, args=args)


def _sensors(text: str, prefix: str) -> list[SensorSpec]:
    from simulators.simulation import as_specs, make_sensors

    text = text.strip()
    if text.isdigit():
        return make_sensors(int(text), prefix=prefix)
    return as_specs([s.strip() for s in text.split(",") if s.strip()])


def _write(sim: Simulator, ticks: int, args: argparse.Namespace) -> int:
    from simulators.csvfiles import ReadingsWriter

    with open(args.out, "w", newline="") as fh:
        writer = ReadingsWriter(fh)
        for _ in range(ticks):
            writer.write(sim.tick())
    incidents = _write_labels(sim, args.labels)
    print(
        f"simulate: wrote {writer.rows} readings of {len(sim.sensors)} sensors to {args.out} "
        f"({incidents} incidents)"
    )
    return 0


def _write_labels(sim: Simulator, path: str | None) -> int:
    from simulators.csvfiles import write_labels

    incidents = sim.close()
    if path:
        with open(path, "w", newline="") as fh:
            write_labels(fh, incidents)
    return len(incidents)


def _publish(sim: Simulator, ticks: int | None, *, paced: bool, args: argparse.Namespace) -> int:
    from core.errors import BrokerError, ConfigError
    from simulators.publisher import Publisher
    from simulators.settings import SimulatorSettings

    settings = SimulatorSettings()
    target = settings.target(args.broker)
    if target is None:
        raise ConfigError("no broker: pass --broker, set MQTT_URL, or write a file with --out")
    pub = Publisher(
        target,
        qos=args.qos,
        client_id=args.client_id,
        tls=settings.tls,
        max_inflight=args.max_inflight,
        keepalive_s=settings.mqtt_keepalive_s,
    )
    pub.connect()
    stop = _stop_on_signals()
    progress = _Progress(pub, enabled=not args.quiet)
    error: BrokerError | None = None
    try:
        _loop(sim, ticks, pub, stop, progress, paced=paced, fmt=args.fmt, batch=args.batch)
    except BrokerError as exc:
        # Still flush, count and summarise: the counts of a failed run matter most.
        error = exc
    finally:
        stats = pub.close(timeout_s=5.0 if error else None)
        progress.done()
    incidents = _write_labels(sim, args.labels)
    print(
        f"simulate: sent={stats.sent} failed={stats.failed} readings "
        f"({stats.messages_sent} messages) in {stats.elapsed_s:.1f}s, "
        f"{stats.rate:.0f} readings/s; incidents={incidents}"
    )
    if error is not None:
        print(f"sensorpipe simulate: {error}", file=sys.stderr)
    return 0 if stats.failed == 0 and error is None else 1


def _loop(
    sim: Simulator,
    ticks: int | None,
    pub: Publisher,
    stop: threading.Event,
    progress: _Progress,
    *,
    paced: bool,
    fmt: PayloadFormat,
    batch: int,
) -> None:
    from core.wire import Reading
    from simulators.publisher import encode_batch

    buffers: dict[str, list[Reading]] = {s.sensor_id: [] for s in sim.sensors}
    t0 = time.monotonic()
    k = 0
    while (ticks is None or k < ticks) and not stop.is_set():
        if paced and stop.wait(max(0.0, t0 + k * sim.interval_s - time.monotonic())):
            break
        for sample in sim.tick():
            buf = buffers[sample.reading.sensor_id]
            buf.append(sample.reading)
            if len(buf) >= batch:
                pub.publish(*encode_batch(buf, fmt), readings=len(buf))
                buf.clear()
        k += 1
        progress.update()
    for buf in buffers.values():
        if buf:
            pub.publish(*encode_batch(buf, fmt), readings=len(buf))


def _stop_on_signals() -> threading.Event:
    """SIGINT/SIGTERM end the run gracefully: flush batches, await acknowledgements, summarise."""
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    return stop


class _Progress:
    """A progress line on stderr: rewritten in place on a terminal, every 10 s otherwise."""

    def __init__(self, pub: Publisher, *, enabled: bool) -> None:
        self.pub = pub
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.every_s = 1.0 if self.tty else 10.0
        self.last = time.monotonic()

    def update(self) -> None:
        now = time.monotonic()
        if self.enabled and now - self.last >= self.every_s:
            self.last = now
            s = self.pub.stats
            line = (
                f"simulate: sent {s.sent} failed {s.failed} in-flight {self.pub.in_flight} "
                f"{s.rate:.0f} readings/s"
            )
            print(
                f"\r{line}" if self.tty else line,
                end="" if self.tty else "\n",
                file=sys.stderr,
                flush=True,
            )

    def done(self) -> None:
        if self.enabled and self.tty:
            print(file=sys.stderr)
