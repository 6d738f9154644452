"""Scorer service latency and throughput, beside the raw MQTT floor measured in the same run.

Everything runs on private servers started here (Mosquitto with ``set_tcp_nodelay true``,
PostgreSQL), against the real ``python -m scorer`` process:

1. **Two-hop MQTT floor** at each rate: publisher → broker → relay client (paho, republishes each
   message on ``alerts/<id>``) → broker → subscriber. No scoring, no database: the least any
   "reading in, alert out" service can take on this machine right now.
2. **publish → alert** at each rate: 1,000 warm sensors (history in the database, so the
   scorer's warm start covers the warm-up) report round-robin at the target rate; now and then one
   sensor's reading is a gross spike. Latency = the alert's arrival at a subscriber minus the
   publish time of the reading that caused it (matched by sensor and timestamp).
3. **Throughput**: readings/s through the service with 1,000 sensors (published as fast as the
   publisher can, one reading per message and 50 per message), and the scoring library's own
   ``score_batch`` rate in this process, which bounds it.
4. **Preloaded throughput and receive floor**: the same readings published while the receiver is
   stopped (SIGSTOP), so the broker holds them, then timed from SIGCONT until all are processed.
   This takes the Python publisher out of the figure (on a small machine it is often slower than
   the scorer). Receivers: the scorer itself, and a bare client with the scorer's MQTT settings
   that only counts messages, through aiomqtt's message iterator and through the tap the scorer
   uses (``scorer.mqtt.tap_messages`` + ``buffer_reads``): the most any aiomqtt/paho consumer
   gets through in one Python process here.

    .venv/bin/python benchmarks/bench_scorer_latency.py --quick   # a few seconds per figure
    .venv/bin/python benchmarks/bench_scorer_latency.py           # the figures of docs/perf
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.wire import Reading, decode_event, encode_reading, encode_readings
from simulators import Simulator, make_sensors
from tests.integration.scorer_harness import (
    ScorerProcess,
    _client,
    build_models,
    store_history,
)
from tests.servers import MosquittoServer, PgServer, migrate

HISTORY_TICKS = 150
SPIKE_EVERY = 250  # one injected spike per this many readings


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def row(name: str, rate: str, lat_ms: list[float], note: str = "") -> str:
    return (
        f"| {name} | {rate} | {len(lat_ms)} | {pct(lat_ms, 0.5):.2f} | {pct(lat_ms, 0.99):.2f} "
        f"| {max(lat_ms, default=float('nan')):.2f} | {note} |"
    )


def paced(n: int, rate: float) -> list[float]:
    """Send deadlines (perf_counter offsets) for n messages at ``rate`` per second."""
    return [i / rate for i in range(n)]


# --------------------------------------------------------------------------- two-hop floor


def two_hop_floor(url: str, rate: float, seconds: float) -> list[float]:
    sent: dict[bytes, float] = {}
    lat: list[float] = []
    done = threading.Event()
    n = int(rate * seconds)
    relay = _client(url, "bench-relay", max_inflight=1000)
    sub = _client(url, "bench-floor-sub", max_inflight=1000)

    def on_relay(c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        c.publish("alerts/" + msg.topic.split("/")[1], msg.payload, qos=1)

    def on_sub(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        t = time.perf_counter()
        t0 = sent.get(bytes(msg.payload))
        if t0 is not None:
            lat.append((t - t0) * 1000)
        if len(lat) >= n:
            done.set()

    relay.on_message = on_relay
    sub.on_message = on_sub
    relay.subscribe("sensors/+/readings", qos=1)
    sub.subscribe("alerts/+", qos=1)
    relay.loop_start()
    sub.loop_start()
    pub = _client(url, "bench-floor-pub", max_inflight=1000)
    pub.loop_start()
    time.sleep(0.5)
    now = datetime.now(UTC)
    start = time.perf_counter()
    for i, due in enumerate(paced(n, rate)):
        _sleep_until(start + due)
        r = Reading(sensor_id=f"floor-{i % 1000:04d}", time=now, value=float(i))
        payload = encode_reading(r)
        sent[payload] = time.perf_counter()
        pub.publish(f"sensors/{r.sensor_id}/readings", payload, qos=1)
    done.wait(10)
    for c in (pub, relay, sub):
        c.loop_stop()
        c.disconnect()
    return lat


def _sleep_until(t: float) -> None:
    delay = t - time.perf_counter()
    if delay > 0.0005:
        time.sleep(delay)


# --------------------------------------------------------------------------- the service


class AlertTimer:
    """Subscriber of ``alerts/+`` matching each opening alert to its reading's publish time."""

    def __init__(self, url: str) -> None:
        self.sent: dict[tuple[str, datetime], float] = {}
        self.lat: list[float] = []
        self.unmatched = 0
        self.spiked: set[str] = set()
        self.client = _client(url, "bench-alerts", max_inflight=1000)
        self.client.on_message = self._on
        self.client.subscribe("alerts/+", qos=1)
        self.client.loop_start()

    def _on(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        t = time.perf_counter()
        e = decode_event(bytes(msg.payload))
        if e.state != "open" or e.kind != "anomaly":
            return
        t0 = self.sent.get((e.sensor_id, e.timestamp))
        if t0 is None:
            self.unmatched += 1
        else:
            self.lat.append((t - t0) * 1000)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def service_latency(
    url: str,
    sim: Simulator,
    rate: float,
    seconds: float,
    timer: AlertTimer,
    spread: dict[str, float],
) -> int:
    """Publish ticks of the simulator at ``rate`` readings/s with injected spikes; returns
    how many spikes were sent (their alerts are timed by ``timer``)."""
    pub = _client(url, "bench-pub", max_inflight=1000)
    pub.loop_start()
    n = int(rate * seconds)
    timer.lat.clear()
    spikes = 0
    start = time.perf_counter()
    i = 0
    next_spike = SPIKE_EVERY // 2
    while i < n:
        for s in sim.tick():
            if i >= n:
                break
            r = s.reading
            # Each spike on a sensor never spiked before: its incident cannot be open already.
            if i >= next_spike and r.sensor_id not in timer.spiked:
                r = r.model_copy(update={"value": r.value + 40.0 * spread[r.sensor_id]})
                timer.spiked.add(r.sensor_id)
                next_spike = i + SPIKE_EVERY
                spikes += 1
            _sleep_until(start + i / rate)
            timer.sent[(r.sensor_id, r.time)] = time.perf_counter()
            pub.publish(f"sensors/{r.sensor_id}/readings", encode_reading(r), qos=1)
            i += 1
    pub.loop_stop()
    pub.disconnect()
    return spikes


def wait_idle(proc: ScorerProcess, timeout_s: float = 300.0) -> None:
    """Until the scorer has worked off its backlog (queues empty, counter steady)."""
    deadline = time.monotonic() + timeout_s
    last = -1.0
    while time.monotonic() < deadline:
        scored = proc.metric("sensorpipe_scorer_readings_scored_total")
        if proc.metric("sensorpipe_scorer_queue_depth") == 0 and scored == last:
            return
        last = scored
        time.sleep(0.5)
    raise TimeoutError("the scorer did not catch up")


def throughput(url: str, proc: ScorerProcess, sim: Simulator, n: int, per_message: int) -> float:
    readings: list[Reading] = []
    while len(readings) < n:
        readings.extend(s.reading for s in sim.tick())
    pub = _client(url, f"bench-tput-{per_message}", max_inflight=1000)
    pub.loop_start()
    wait_idle(proc)
    before = proc.metric("sensorpipe_scorer_readings_scored_total")
    start = time.perf_counter()
    for topic, payload in messages(readings, per_message):
        pub.publish(topic, payload, qos=1)
    proc.wait_metric("sensorpipe_scorer_readings_scored_total", before + len(readings), 600)
    elapsed = time.perf_counter() - start
    pub.loop_stop()
    pub.disconnect()
    return len(readings) / elapsed


def messages(readings: list[Reading], per_message: int) -> list[tuple[str, bytes]]:
    """``(topic, payload)`` of the readings, ``per_message`` of one sensor per message."""
    if per_message == 1:
        return [(f"sensors/{r.sensor_id}/readings", encode_reading(r)) for r in readings]
    by: dict[str, list[Reading]] = {}
    for r in readings:
        by.setdefault(r.sensor_id, []).append(r)
    return [
        (f"sensors/{sid}/readings", encode_readings(rs[k : k + per_message]))
        for sid, rs in by.items()
        for k in range(0, len(rs), per_message)
    ]


def preload(url: str, pid: int, msgs: list[tuple[str, bytes]]) -> None:
    """Publish ``msgs`` (QoS 1, all acknowledged) while process ``pid`` is stopped, so the broker
    holds them for it; the caller starts its clock and sends SIGCONT. Bounded by the client's
    keepalive: the broker drops a client silent for 1.5 x 30 s."""
    pub = _client(url, f"bench-preload-{pid}", max_inflight=1000)
    pub.loop_start()
    os.kill(pid, signal.SIGSTOP)
    try:
        infos = [pub.publish(topic, payload, qos=1) for topic, payload in msgs]
        for info in infos:
            info.wait_for_publish(timeout=40)
        time.sleep(0.5)  # the broker's last writes to the stopped receiver
    except BaseException:
        os.kill(pid, signal.SIGCONT)
        raise
    finally:
        pub.loop_stop()
        pub.disconnect()


def throughput_preloaded(
    url: str, proc: ScorerProcess, sim: Simulator, n: int, per_message: int
) -> float:
    """Readings/s of the scorer working off ``n`` readings the broker already holds."""
    readings: list[Reading] = []
    while len(readings) < n:
        readings.extend(s.reading for s in sim.tick())
    wait_idle(proc)
    before = proc.metric("sensorpipe_scorer_readings_scored_total")
    assert proc.proc is not None
    preload(url, proc.proc.pid, messages(readings, per_message))
    start = time.perf_counter()
    proc.proc.send_signal(signal.SIGCONT)
    proc.wait_metric("sensorpipe_scorer_readings_scored_total", before + len(readings), 600)
    return len(readings) / (time.perf_counter() - start)


def receive_floor(url: str, sim: Simulator, n: int, mode: str) -> float:
    """Messages/s a bare client with the scorer's MQTT settings receives (preloaded; ``mode`` is
    ``iterator`` for aiomqtt's ``client.messages`` or ``tap`` for the scorer's receive path)."""
    readings: list[Reading] = []
    while len(readings) < n:
        readings.extend(s.reading for s in sim.tick())
    msgs = messages(readings, 1)
    child = subprocess.Popen(
        [sys.executable, __file__, "--receive", url, str(len(msgs)), mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    try:
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("receiver did not subscribe")
        preload(url, child.pid, msgs)
        child.send_signal(signal.SIGCONT)
        out, _ = child.communicate(timeout=300)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return float(out.split()[0])


def _receive(url: str, n: int, mode: str) -> int:
    """Child of ``receive_floor``: count ``n`` messages, print the rate from the first one."""
    from scorer import mqtt as scorer_mqtt
    from scorer.settings import ScorerSettings

    settings = ScorerSettings(database_url="postgresql://unused", mqtt_url=url)
    count = 0
    first = 0.0
    done = asyncio.Event()

    def on_message(_topic: str, _payload: bytes) -> None:
        nonlocal count, first
        first = first or time.perf_counter()
        count += 1
        if count >= n:
            done.set()

    async def run() -> None:
        client = scorer_mqtt.make_client(
            settings,
            client_id=f"bench-receive-{mode}",
            component="bench-receive",
            protocol=settings.scorer_mqtt_protocol,
            queue_size=2 * n,
            on_drop=lambda: None,
        )
        if mode == "tap":
            scorer_mqtt.buffer_reads(client)
            scorer_mqtt.tap_messages(client, on_message, lambda: None)
        async with client:
            await client.subscribe("sensors/+/readings", qos=settings.scorer_subscribe_qos)
            print("ready", flush=True)
            if mode == "tap":
                await asyncio.wait_for(done.wait(), 300)
            else:
                async for msg in client.messages:
                    on_message(msg.topic.value, b"")
                    if done.is_set():
                        break

    asyncio.run(run())
    print(f"{count / (time.perf_counter() - first):.1f}", flush=True)
    return 0


def library_rate(models_dir: Path, sim: Simulator, n: int) -> float:
    """Readings/s of ``Scorer.score_batch`` alone on 1,000-sensor batches (warm)."""
    from scorer.models import load_models

    scorer = load_models(models_dir).scorer
    ticks = [[s.reading for s in sim.tick()] for _ in range(HISTORY_TICKS + n // 1000 + 1)]
    for t in ticks[:HISTORY_TICKS]:
        scorer.score_batch(t)
    rest = ticks[HISTORY_TICKS:]
    start = time.perf_counter()
    for t in rest:
        scorer.score_batch(t)
    return sum(len(t) for t in rest) / (time.perf_counter() - start)


def stage_costs(models_dir: Path, sim: Simulator) -> list[tuple[str, float]]:
    """Raw per-reading costs of the scorer's stages in this process (µs per reading)."""
    from core.topics import TopicKind
    from core.wire import decode
    from scorer.models import load_models

    scorer = load_models(models_dir).scorer
    ticks = [[s.reading for s in sim.tick()] for _ in range(HISTORY_TICKS + 3)]
    for t in ticks[:HISTORY_TICKS]:
        scorer.score_batch(t)
    probe = ticks[HISTORY_TICKS]
    payloads = [(encode_reading(r), r.sensor_id) for r in probe]
    t0 = time.perf_counter()
    for raw, sid in payloads:
        decode(TopicKind.READINGS, raw, topic_sensor_id=sid, now=probe[0].time)
    out = [("`core.wire.decode`, one reading object", (time.perf_counter() - t0) / len(probe))]
    for size in (1, 10, 100, 1000):
        batch = ticks[HISTORY_TICKS + 1 + (size > 100)]
        t0 = time.perf_counter()
        for k in range(0, 1000, size):
            scorer.score_batch(batch[k : k + size])
        out.append((f"`Scorer.score_batch`, batches of {size}", (time.perf_counter() - t0) / 1000))
    return [(name, 1e6 * sec) for name, sec in out]


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few seconds per figure")
    ap.add_argument("--sensors", type=int, default=1000)
    ap.add_argument("--receive", nargs=3, metavar=("URL", "N", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.receive:  # the child process of receive_floor
        return _receive(args.receive[0], int(args.receive[1]), args.receive[2])
    seconds = 3.0 if args.quick else 6.0
    tput_n = 10_000 if args.quick else 30_000
    warnings.simplefilter("ignore", RuntimeWarning)

    tmp = Path(tempfile.mkdtemp(prefix="bench-scorer-"))
    scorers: list[ScorerProcess] = []
    broker = MosquittoServer().start()
    pg = PgServer().start()
    try:
        db = pg.create_db("sensorpipe")
        migrate(db)
        models = tmp / "models"
        build_models(models)
        print(
            f"# scorer latency benchmark — {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"{'quick' if args.quick else 'full'} run, {args.sensors} sensors\n"
        )
        lines = [
            "| path | rate (readings/s) | n | p50 ms | p99 ms | max ms | note |",
            "|---|---|---|---|---|---|---|",
        ]
        for rate in (1000.0, 5000.0):
            lat = two_hop_floor(broker.url, rate, seconds)
            lines.append(row("two-hop MQTT floor (relay, no scoring)", f"{rate:,.0f}", lat))

        total_ticks = (
            HISTORY_TICKS + int(6000 * seconds / args.sensors) + 8 * tput_n // args.sensors + 10
        )
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=total_ticks)
        sim = Simulator(
            make_sensors(args.sensors, prefix="bench"), seed=3, interval_s=1.0, start=start
        )
        history = [s.reading for _ in range(HISTORY_TICKS) for s in sim.tick()]
        store_history(db, history)
        spread: dict[str, float] = {}
        for r in history:
            lo, hi = (
                spread.get(r.sensor_id + "lo", r.value),
                spread.get(r.sensor_id + "hi", r.value),
            )
            spread[r.sensor_id + "lo"], spread[r.sensor_id + "hi"] = (
                min(lo, r.value),
                max(hi, r.value),
            )
        spread = {
            s.sensor_id: max(spread[s.sensor_id + "hi"] - spread[s.sensor_id + "lo"], 1e-3)
            for s in sim.sensors
        }

        proc = ScorerProcess(
            db_url=db,
            mqtt_url=broker.url,
            models_dir=models,
            log_path=tmp / "scorer.log",
            LOG_LEVEL="WARNING",
        )
        scorers.append(proc.start())
        proc.wait_metric("sensorpipe_scorer_warm_start_readings", 1, 120)
        timer = AlertTimer(broker.url)
        time.sleep(1.0)
        for rate in (1000.0, 5000.0):
            wait_idle(proc)
            spikes = service_latency(broker.url, sim, rate, seconds, timer, spread)
            wait_idle(proc)
            time.sleep(0.5)  # the last alerts' round trip
            lat = list(timer.lat)
            lines.append(
                row(
                    "publish → alert (scorer)",
                    f"{rate:,.0f}",
                    lat,
                    f"{len(lat)} alerts of {spikes} spikes",
                )
            )
        timer.close()
        print("\n".join(lines))

        print("\n| throughput | readings/s |\n|---|---|")
        for per in (1, 50):
            rate = throughput(broker.url, proc, sim, tput_n, per)
            print(f"| through the service, {per} reading(s) per MQTT message | {rate:,.0f} |")
        for per in (1, 50):
            rate = throughput_preloaded(broker.url, proc, sim, tput_n, per)
            print(
                f"| through the service, {per} reading(s) per MQTT message, preloaded "
                f"| {rate:,.0f} |"
            )
        proc.stop()
        for mode, name in (("iterator", "aiomqtt's message iterator"), ("tap", "the scorer's tap")):
            rate = receive_floor(broker.url, sim, tput_n, mode)
            print(f"| receive only ({name}), 1 reading per message, preloaded | {rate:,.0f} |")
        # The same over MQTT 5 (paho builds a Properties object for every PUBLISH received).
        v5 = ScorerProcess(
            db_url=db,
            mqtt_url=broker.url,
            models_dir=models,
            log_path=tmp / "scorer-v5.log",
            LOG_LEVEL="WARNING",
            SCORER_MQTT_PROTOCOL="5",
        )
        scorers.append(v5.start())
        v5.wait_metric("sensorpipe_scorer_warm_start_readings", 1, 120)
        time.sleep(1.0)
        rate = throughput(broker.url, v5, sim, tput_n, 1)
        print(
            f"| through the service, 1 reading per message, `SCORER_MQTT_PROTOCOL=5` "
            f"| {rate:,.0f} |"
        )
        v5.stop()
        lib = library_rate(models, sim, tput_n)
        print(f"| `Scorer.score_batch` alone (1,000-sensor batches, same process) | {lib:,.0f} |")
        print("\n| stage (raw cost, this process, same run) | µs per reading |\n|---|---|")
        for name, us in stage_costs(models, sim):
            print(f"| {name} | {us:,.1f} |")
        with open("/proc/loadavg") as f:
            print(f"\nload average during the run (1/5/15 min): {' '.join(f.read().split()[:3])}")
    finally:
        for p in scorers:  # never leave a scorer behind, even when a figure failed
            p.stop()
        broker.destroy()
        pg.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
