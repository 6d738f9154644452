"""Scorer service latency and throughput, beside the raw MQTT floor measured in the same run.

Everything runs on private servers started here (Mosquitto with ``set_tcp_nodelay true``,
PostgreSQL), against the real ``python -m scorer`` process. The load generator of the timed
figures writes MQTT packets straight to a socket (``_mqtt_load.RawPublisher``; ``--publisher
paho`` for paho's client, as in runs before 2026-11-26), and every other client runs in its own
process, as it would in a deployment: on 2 cores paho's publisher took most of a core at
5,000 messages/s, and a subscriber sharing this process's GIL with the paced publisher added its
own tail to every figure.

1. **Two-hop MQTT floor** at each rate: publisher → broker → relay process (paho, republishes
   each message on ``alerts/<id>``) → broker → subscriber process. No scoring, no database: the
   least any "reading in, alert out" service can take on this machine right now.
2. **publish → alert** at each rate: 1,000 warm sensors (history in the database, so the
   scorer's warm start covers the warm-up) report round-robin at the target rate; now and then one
   sensor's reading is a gross spike. Latency = the alert's arrival at a subscriber process
   minus the publish time of the reading that caused it (matched by sensor and timestamp; one
   machine, one wall clock).
3. **Throughput**: readings/s through the service with 1,000 sensors (published as fast as the
   publisher can, one reading per message and 50 per message), and the scoring library's own
   ``score_batch`` rate in this process, which bounds it.
4. **Preloaded throughput and receive floor**: the same readings published while the receiver is
   stopped (SIGSTOP), so the broker holds them, then timed from SIGCONT until all are processed.
   This takes the publisher out of the figure. Receivers: the scorer itself, and a bare client
   with the scorer's MQTT settings that only counts messages, through aiomqtt's message iterator
   and through the receive path the scorer uses (``scorer.mqtt.tap_messages``, which frames the
   readings itself): what is left of the receive cost. With it, the share of
   the time the scorer's batch step was busy (its ``batch_seconds``) and its mean batch size.
5. **Where an alert's time goes**: the scorer's ``alert_stage_seconds`` histogram over each
   latency phase (wait, process, store, publish), and the subscriber's split of each latency at
   the event's ``emitted_at`` (when its batch started).
6. **Raw costs in this process**: ``core.wire.decode``, ``score_batch`` by batch size, the whole
   batch step (``ScorerWorker._process``) per reading, and ``store_events`` for one event on the
   same PostgreSQL with ``fsync`` off and on and with ``synchronous_commit = off``.

    .venv/bin/python benchmarks/bench_scorer_latency.py --quick   # a few seconds per figure
    .venv/bin/python benchmarks/bench_scorer_latency.py           # the figures of docs/perf
    .venv/bin/python benchmarks/bench_scorer_latency.py --quick --only throughput --profile /tmp/p
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._mqtt_load import RawPublisher
from core.topics import TopicKind
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
SPIKE_EVERY = 250  # one injected spike per this many readings (--spike-every)


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


class Publisher(Protocol):
    def publish(self, topic: str, payload: bytes) -> None: ...
    def close(self) -> None: ...


class PahoPublisher:
    """paho's client at QoS 1 (what the earlier runs used; ``--publisher paho``)."""

    def __init__(self, url: str, client_id: str) -> None:
        self.client = _client(url, client_id, max_inflight=1000)
        self.client.loop_start()
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def publish(self, topic: str, payload: bytes) -> None:
        self.infos.append(self.client.publish(topic, payload, qos=1))

    def close(self) -> None:
        for info in self.infos:
            info.wait_for_publish(timeout=30)
        self.client.loop_stop()
        self.client.disconnect()


PUBLISHER = "raw"  # --publisher


def publisher(url: str, client_id: str) -> Publisher:
    """The load generator of the timed figures: ``_mqtt_load.RawPublisher`` unless ``--publisher
    paho`` (see that module for why)."""
    if PUBLISHER == "paho":
        return PahoPublisher(url, client_id)
    return RawPublisher(url, client_id)


def cpu_probe_ms() -> float:
    """The best of three timings of a fixed pure-Python loop (ms). On a shared VM the same
    loop has taken 1.0–1.34 s within one idle minute; printed at the start and the end of a
    run so a slow minute shows beside its figures."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def paced(n: int, rate: float) -> list[float]:
    """Send deadlines (perf_counter offsets) for n messages at ``rate`` per second."""
    return [i / rate for i in range(n)]


# --------------------------------------------------------------------------- clients


class Client:
    """A paho client in its own process, like a real consumer (and off this process's GIL,
    where the paced publisher runs): ``relay`` republishes every reading on ``alerts/<id>`` at
    QoS 1; ``listen`` writes each alert's arrival (wall clock) and payload to ``out``."""

    def __init__(self, url: str, role: str, out: Path) -> None:
        self.out = out
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--client", url, role, str(out)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "subscribed":
            self.proc.kill()
            raise RuntimeError(f"bench {role} client did not start")

    def stop(self) -> list[tuple[float, bytes]]:
        """Stop the client; what it received, as (arrival wall-clock s, payload)."""
        self.proc.terminate()
        self.proc.wait(timeout=10)
        if not self.out.exists():
            return []
        lines = self.out.read_text().splitlines()
        return [(float(t), bytes.fromhex(h)) for t, h in (line.split() for line in lines)]


def _client_process(url: str, role: str, out: str) -> int:
    # SIGTERM is awaited below (before paho's thread starts, so it inherits the mask).
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    c = _client(url, f"bench-{role}-{os.getpid()}", max_inflight=1000)
    f = open(out, "w")  # noqa: SIM115 - written until SIGTERM

    def on_relay(cl: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        cl.publish("alerts/" + msg.topic.split("/")[1], msg.payload, qos=1)

    def on_listen(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        f.write(f"{time.time():.6f} {bytes(msg.payload).hex()}\n")
        f.flush()

    c.on_message = on_relay if role == "relay" else on_listen
    topic = "sensors/+/readings" if role == "relay" else "alerts/+"
    c.subscribe(topic, qos=1)
    c.loop_start()
    time.sleep(0.5)  # SUBACK
    print("subscribed", flush=True)
    signal.sigwait({signal.SIGTERM})
    c.loop_stop()
    f.close()
    return 0


# --------------------------------------------------------------------------- two-hop floor


def two_hop_floor(url: str, rate: float, seconds: float, tmp: Path) -> list[float]:
    """publisher → broker → relay process → broker → subscriber process, ms per message."""
    n = int(rate * seconds)
    relay = Client(url, "relay", tmp / "relay.out")
    sub = Client(url, "listen", tmp / "floor.out")
    pub = publisher(url, "bench-floor-pub")
    now = datetime.now(UTC)
    load = []
    for i in range(n):
        r = Reading(sensor_id=f"floor-{i % 1000:04d}", time=now, value=float(i))
        load.append((f"sensors/{r.sensor_id}/readings", encode_reading(r)))
    sent: dict[bytes, float] = {}
    start = time.perf_counter()
    for due, (topic, payload) in zip(paced(n, rate), load, strict=True):
        _sleep_until(start + due)
        sent[payload] = time.time()
        pub.publish(topic, payload)
    pub.close()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _lines(sub.out) < n:
        time.sleep(0.1)
    relay.stop()
    return [(t - sent[p]) * 1000 for t, p in sub.stop() if p in sent]


def _lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def _sleep_until(t: float) -> None:
    delay = t - time.perf_counter()
    if delay > 0.0005:
        time.sleep(delay)


# --------------------------------------------------------------------------- the service


class AlertTimer:
    """Times each opening alert from its reading's publish to its arrival at a subscriber
    process (one machine, one wall clock), matched by sensor and timestamp."""

    def __init__(self, url: str, tmp: Path) -> None:
        self.url = url
        self.tmp = tmp
        self.sent: dict[tuple[str, datetime], float] = {}  # publish wall-clock time
        self.lat: list[float] = []
        # The same latency split at the event's emitted_at (when the scorer's batch started):
        # publish → batch start, batch start → alert received.
        self.before_batch: list[float] = []
        self.after_batch: list[float] = []
        self.unmatched = 0
        self.spiked: set[str] = set()
        self._n = 0
        self._listener: Client | None = None

    def start(self) -> None:
        self._n += 1
        self._listener = Client(self.url, "listen", self.tmp / f"alerts-{self._n}.out")
        for xs in (self.lat, self.before_batch, self.after_batch):
            xs.clear()
        self.unmatched = 0

    def collect(self) -> None:
        """Stop listening and time what arrived."""
        assert self._listener is not None
        for arrived, payload in self._listener.stop():
            e = decode_event(payload)
            if e.state != "open" or e.kind != "anomaly":
                continue
            sent = self.sent.get((e.sensor_id, e.timestamp))
            if sent is None:
                self.unmatched += 1
                continue
            started = e.emitted_at.timestamp()
            self.lat.append((arrived - sent) * 1000)
            self.before_batch.append((started - sent) * 1000)
            self.after_batch.append((arrived - started) * 1000)


def service_latency(
    url: str,
    sim: Simulator,
    rate: float,
    seconds: float,
    timer: AlertTimer,
    spread: dict[str, float],
    spike_every: int,
) -> int:
    """Publish ticks of the simulator at ``rate`` readings/s with injected spikes; returns
    how many spikes were sent (their alerts are timed by ``timer``). The messages are built
    before the clock starts, so the paced loop only sends."""
    n = int(rate * seconds)
    load: list[tuple[tuple[str, datetime], str, bytes]] = []
    spikes = 0
    next_spike = spike_every // 2
    while len(load) < n:
        for s in sim.tick():
            if len(load) >= n:
                break
            r = s.reading
            # Each spike on a sensor never spiked before: its incident cannot be open already.
            if len(load) >= next_spike and r.sensor_id not in timer.spiked:
                r = r.model_copy(update={"value": r.value + 40.0 * spread[r.sensor_id]})
                timer.spiked.add(r.sensor_id)
                next_spike = len(load) + spike_every
                spikes += 1
            load.append(
                ((r.sensor_id, r.time), f"sensors/{r.sensor_id}/readings", encode_reading(r))
            )
    pub = publisher(url, "bench-pub")
    start = time.perf_counter()
    for i, (key, topic, payload) in enumerate(load):
        _sleep_until(start + i / rate)
        timer.sent[key] = time.time()
        pub.publish(topic, payload)
    pub.close()
    return spikes


STAGES = ("wait", "process", "store", "publish")
STAGE_METRIC = "sensorpipe_scorer_alert_stage_seconds"


def stage_histograms(proc: ScorerProcess) -> dict[str, dict[str, float]]:
    """The scorer's per-alert stage histogram: ``{stage: {le or "sum"/"count": value}}``."""
    url = f"http://127.0.0.1:{proc.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, dict[str, float]] = {s: {} for s in STAGES}
    for line in text.splitlines():
        if not line.startswith(STAGE_METRIC):
            continue
        name_labels, value = line.rsplit(" ", 1)
        labels = dict(kv.split("=", 1) for kv in name_labels.split("{", 1)[1][:-1].split(","))
        stage = labels["stage"].strip('"')
        suffix = name_labels.split("{", 1)[0][len(STAGE_METRIC) + 1 :]
        if suffix not in ("bucket", "sum", "count"):  # _created
            continue
        key = labels["le"].strip('"') if suffix == "bucket" else suffix
        out[stage][key] = float(value)
    return out


def stage_rows(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], rate: str
) -> list[str]:
    """Per stage, over the alerts between two snapshots: n, mean, and the bucket bounds that
    hold the median and the 99th percentile (a histogram gives no finer quantiles)."""
    rows = []
    for stage in STAGES:
        delta = {k: v - before[stage].get(k, 0.0) for k, v in after[stage].items()}
        n = delta.get("count", 0.0)
        mean = 1000 * delta.get("sum", 0.0) / n if n else float("nan")
        bounds = sorted((float(k), v) for k, v in delta.items() if k not in ("sum", "count"))
        p50, p99 = (_bucket_bound(bounds, q * n) for q in (0.5, 0.99))
        rows.append(f"| {stage} | {rate} | {n:.0f} | {mean:.2f} | {p50} | {p99} |")
    return rows


def _bucket_bound(bounds: list[tuple[float, float]], count: float) -> str:
    """The upper bound (ms) of the first bucket holding at least ``count`` observations."""
    hit = next((b for b, c in bounds if c >= count), float("inf"))
    return f"≤ {1000 * hit:g}"


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
    load = messages(readings, per_message)
    pub = publisher(url, f"bench-tput-{per_message}")
    wait_idle(proc)
    before = proc.metric("sensorpipe_scorer_readings_scored_total")
    start = time.perf_counter()
    for topic, payload in load:
        pub.publish(topic, payload)
    proc.wait_metric("sensorpipe_scorer_readings_scored_total", before + len(readings), 600)
    elapsed = time.perf_counter() - start
    pub.close()
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
) -> tuple[float, float, float]:
    """Readings/s of the scorer working off ``n`` readings the broker already holds, with the
    share of that time its batch step (decode, score, alerts: ``batch_seconds``) took and the
    mean batch size in messages."""
    readings: list[Reading] = []
    while len(readings) < n:
        readings.extend(s.reading for s in sim.tick())
    wait_idle(proc)
    counters = (
        "sensorpipe_scorer_readings_scored_total",
        "sensorpipe_scorer_batch_seconds_sum",
        "sensorpipe_scorer_batch_size_sum",
        "sensorpipe_scorer_batch_size_count",
    )
    before = [proc.metric(c) for c in counters]
    assert proc.proc is not None
    preload(url, proc.proc.pid, messages(readings, per_message))
    start = time.perf_counter()
    proc.proc.send_signal(signal.SIGCONT)
    proc.wait_metric(counters[0], before[0] + len(readings), 600)
    elapsed = time.perf_counter() - start
    _, busy_s, msgs, batches = (proc.metric(c) - b for c, b in zip(counters, before, strict=True))
    return len(readings) / elapsed, busy_s / elapsed, msgs / max(batches, 1.0)


class ProfiledScorer(ScorerProcess):
    """The scorer under cProfile (``--profile``): ``python <this file> --profiled-scorer PREFIX``.
    SIGUSR1 starts profiling, SIGUSR2 stops it and writes ``PREFIX.main.prof`` (the event loop
    thread) and ``PREFIX.thread.prof`` (the batch thread calls: decode, score, alerts)."""

    def __init__(self, prefix: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prefix = prefix

    def start(self) -> ScorerProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--profiled-scorer", self.prefix],
            env=self.env,
            cwd=Path(__file__).resolve().parents[1],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self


def _profiled_scorer(prefix: str) -> int:
    """Child of ``ProfiledScorer``: the scorer's ``main()`` with the two profilers attached."""
    import cProfile

    from scorer import worker
    from scorer.__main__ import main as scorer_main

    # CPU time of the calling thread: wall time would bill waits (and SIGSTOP) to whatever runs.
    loop_prof = cProfile.Profile(time.thread_time)
    thread_prof = cProfile.Profile(time.thread_time)
    on = threading.Event()
    process = worker.ScorerWorker._process

    def profiled(self: worker.ScorerWorker, *a: Any) -> worker.BatchResult:
        if not on.is_set():
            return process(self, *a)
        result: worker.BatchResult = thread_prof.runcall(process, self, *a)
        return result

    def start(*_: object) -> None:
        on.set()
        loop_prof.enable()

    def stop(*_: object) -> None:
        loop_prof.disable()
        on.clear()
        loop_prof.dump_stats(prefix + ".main.prof")
        thread_prof.dump_stats(prefix + ".thread.prof")

    worker.ScorerWorker._process = profiled  # type: ignore[method-assign, assignment]
    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    return scorer_main()


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
    # The warm-up's garbage collected now, not by a full collection inside the timed loop (it
    # walks the whole heap and halved this figure in one run).
    gc.collect()
    start = time.perf_counter()
    for t in rest:
        scorer.score_batch(t)
    return sum(len(t) for t in rest) / (time.perf_counter() - start)


def stage_costs(models_dir: Path, sim: Simulator) -> list[tuple[str, float]]:
    """Raw per-reading costs of the scorer's stages in this process (µs per reading)."""
    from core.wire import decode
    from scorer.models import load_models

    scorer = load_models(models_dir).scorer
    ticks = [[s.reading for s in sim.tick()] for _ in range(HISTORY_TICKS + 3)]
    for t in ticks[:HISTORY_TICKS]:
        scorer.score_batch(t)
    probe = ticks[HISTORY_TICKS]
    payloads = [(encode_reading(r), r.sensor_id) for r in probe]
    gc.collect()  # as in library_rate
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


def process_cost(models_dir: Path, sensors: int, per_message: int, n: int) -> float:
    """µs per reading of the scorer's whole batch step (``ScorerWorker._process``: decode, the
    causal filter, ``score_batch``, the alert machine) on messages of ``per_message`` readings
    of one sensor, in batches of the service's default size, warm. No I/O, this process (with
    the scorer's garbage-collector settings)."""
    from core.runtime import tune_gc
    from scorer.models import load_models
    from scorer.settings import ScorerSettings
    from scorer.worker import Inbound, ScorerWorker

    async def build() -> ScorerWorker:  # the worker's MQTT client binds to a running loop
        settings = ScorerSettings(
            database_url="postgresql://unused", mqtt_url="mqtt://unused", models_dir=str(models_dir)
        )
        return ScorerWorker(settings)

    tune_gc()
    worker = asyncio.run(build())
    worker.models = load_models(models_dir, alert_config=worker.settings.alert_config)
    # Its own simulated sensors, timed so the last reading is not in the future (decode checks).
    ticks = HISTORY_TICKS + n // sensors + 2
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=ticks)
    sim = Simulator(make_sensors(sensors, prefix="proc"), seed=5, interval_s=1.0, start=start)
    history: dict[str, list[tuple[datetime, float]]] = {}
    for _ in range(HISTORY_TICKS):
        for s in sim.tick():
            history.setdefault(s.reading.sensor_id, []).append((s.reading.time, s.reading.value))
    worker.models.scorer.warm_start_many(history)
    readings: list[Reading] = []
    while len(readings) < n:
        readings.extend(s.reading for s in sim.tick())
    kind = TopicKind.READINGS
    inbound: list[Inbound] = [
        (time.time(), kind, topic.split("/")[1], payload)
        for topic, payload in messages(readings, per_message)
    ]
    size = worker.settings.scorer_batch_size
    t0 = time.perf_counter()
    scored = 0
    for k in range(0, len(inbound), size):
        scored += worker._process(inbound[k : k + size], False).scored
    return 1e6 * (time.perf_counter() - t0) / scored


def store_costs(
    pg: PgServer, db: str, sensor_ids: list[str], n: int
) -> list[tuple[str, float, float]]:
    """Per call of ``scorer.storage.store_events`` with one new event (upsert + COMMIT, a pool
    like the scorer's), in ms: the bench's PostgreSQL as it runs the service (``fsync = off``),
    then with ``fsync = on`` (a production server), then that with ``synchronous_commit = off``
    for the role (what ``SET LOCAL`` on the alert transaction would do; not the default)."""
    import psycopg

    variants = [
        ("fsync = off (this benchmark's server)", "off", "on"),
        ("fsync = on, synchronous_commit = on (production durability)", "on", "on"),
        ("fsync = on, synchronous_commit = off (weaker: not used)", "on", "off"),
    ]
    out = []
    with psycopg.connect(pg.dsn(), autocommit=True) as admin:
        try:
            for k, (name, fsync, sync_commit) in enumerate(variants):
                admin.execute(f"ALTER SYSTEM SET fsync = {fsync}")
                admin.execute(f"ALTER ROLE postgres SET synchronous_commit = {sync_commit}")
                admin.execute("SELECT pg_reload_conf()")
                times = asyncio.run(_time_stores(db, sensor_ids[k * n : (k + 1) * n]))
                out.append((name, 1000 * pct(times, 0.5), 1000 * pct(times, 0.99)))
        finally:
            admin.execute("ALTER SYSTEM RESET fsync")
            admin.execute("ALTER ROLE postgres RESET synchronous_commit")
            admin.execute("SELECT pg_reload_conf()")
    return out


async def _time_stores(db: str, sensor_ids: list[str]) -> list[float]:
    """Seconds per ``store_events`` call, one new open event per sensor, one at a time."""
    from core.db import async_pool
    from core.wire import AnomalyEvent, new_event_id
    from scorer.storage import store_events

    now = datetime.now(UTC)
    events = [
        AnomalyEvent(
            event_id=new_event_id(sid, now),
            sensor_id=sid,
            timestamp=now,
            value=1.0,
            score=0.95,
            severity="critical",
            state="open",
            expected=0.0,
            lower=-1.0,
            upper=1.0,
            detectors={"forecast_residual": 0.99, "isolation_forest": 0.8},
            model_version="anomaly_detector:v1",
            emitted_at=now,
        )
        for sid in sensor_ids
    ]
    times = []
    async with async_pool(db, min_size=1, max_size=1, name="bench-store") as pool:
        await store_events(pool, events[:1])  # a warm connection, as in the scorer
        for e in events[1:]:
            t0 = time.perf_counter()
            await store_events(pool, [e])
            times.append(time.perf_counter() - t0)
    return times


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few seconds per figure")
    ap.add_argument("--sensors", type=int, default=1000)
    ap.add_argument("--only", choices=("latency", "throughput"), help="one part of the run")
    ap.add_argument(
        "--spike-every", type=int, default=SPIKE_EVERY, help="more alerts: firmer percentiles"
    )
    ap.add_argument(
        "--scorer-env", action="append", default=[], metavar="NAME=VALUE", help="for the scorer"
    )
    ap.add_argument(
        "--profile",
        metavar="PREFIX",
        help="profile the scorer (cProfile) over the preloaded 50-per-message backlog",
    )
    ap.add_argument(
        "--publisher",
        choices=("raw", "paho"),
        default="raw",
        help="load generator of the timed figures (raw: benchmarks/_mqtt_load.py)",
    )
    ap.add_argument("--receive", nargs=3, metavar=("URL", "N", "MODE"), help=argparse.SUPPRESS)
    ap.add_argument("--profiled-scorer", metavar="PREFIX", help=argparse.SUPPRESS)
    ap.add_argument("--client", nargs=3, metavar=("URL", "ROLE", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:  # a child process of Client
        return _client_process(*args.client)
    if args.receive:  # the child process of receive_floor
        return _receive(args.receive[0], int(args.receive[1]), args.receive[2])
    if args.profiled_scorer:  # the child process of ProfiledScorer
        return _profiled_scorer(args.profiled_scorer)
    global PUBLISHER
    PUBLISHER = args.publisher
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
            f"{'quick' if args.quick else 'full'} run, {args.sensors} sensors; "
            f"machine speed at start: {cpu_probe_ms():.0f} ms\n"
        )
        lines = [
            "| path | rate (readings/s) | n | p50 ms | p99 ms | max ms | note |",
            "|---|---|---|---|---|---|---|",
        ]
        for rate in (1000.0, 5000.0) if args.only != "throughput" else ():
            lat = two_hop_floor(broker.url, rate, seconds, tmp)
            lines.append(row("two-hop MQTT floor (relay, no scoring)", f"{rate:,.0f}", lat))

        total_ticks = (
            HISTORY_TICKS + int(6000 * seconds / args.sensors) + 8 * tput_n // args.sensors + 210
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

        kwargs: dict[str, Any] = {
            "db_url": db,
            "mqtt_url": broker.url,
            "models_dir": models,
            "log_path": tmp / "scorer.log",
            "LOG_LEVEL": "WARNING",
            **dict(kv.split("=", 1) for kv in args.scorer_env),
        }
        proc = ProfiledScorer(args.profile, **kwargs) if args.profile else ScorerProcess(**kwargs)
        scorers.append(proc.start())
        proc.wait_metric("sensorpipe_scorer_warm_start_readings", 1, 120)
        timer = AlertTimer(broker.url, tmp)
        time.sleep(1.0)
        split = [
            "| part of publish → alert (subscriber's view) | rate | n | p50 ms | p99 ms "
            "| max ms | note |",
            "|---|---|---|---|---|---|---|",
        ]
        stages = [
            "| stage (the scorer's histogram) | rate | n | mean ms | p50 ms | p99 ms |",
            "|---|---|---|---|---|---|",
        ]
        for rate in (1000.0, 5000.0) if args.only != "throughput" else ():
            wait_idle(proc)
            hist0 = stage_histograms(proc)
            timer.start()
            spikes = service_latency(
                broker.url, sim, rate, seconds, timer, spread, args.spike_every
            )
            wait_idle(proc)
            time.sleep(0.5)  # the last alerts' round trip
            timer.collect()
            lat = list(timer.lat)
            label = f"{rate:,.0f}"
            note = f"{len(lat)} alerts of {spikes} spikes"
            if timer.unmatched:
                note += f", {timer.unmatched} openings not matched to a published reading"
            lines.append(row("publish → alert (scorer)", label, lat, note))
            split.append(row("publish → scorer batch start", label, timer.before_batch))
            split.append(row("scorer batch start → alert received", label, timer.after_batch))
            stages.extend(stage_rows(hist0, stage_histograms(proc), label))
        print("\n".join(lines))
        print("\n" + "\n".join(split))
        print("\n" + "\n".join(stages))

        if args.only != "latency":
            print("\n| throughput | readings/s |\n|---|---|")
            for per in (1, 50):
                rate = throughput(broker.url, proc, sim, max(tput_n, per * args.sensors), per)
                print(f"| through the service, {per} reading(s) per MQTT message | {rate:,.0f} |")
            for per in (1, 50):
                if args.profile and per == 50:
                    proc.signal(signal.SIGUSR1)
                n = max(tput_n, per * args.sensors)
                rate, busy, size = throughput_preloaded(broker.url, proc, sim, n, per)
                if args.profile and per == 50:
                    proc.signal(signal.SIGUSR2)
                print(
                    f"| through the service, {per} reading(s) per MQTT message, preloaded "
                    f"| {rate:,.0f} (batch step busy {busy:.0%}, {size:,.0f} messages per batch) |"
                )
            proc.stop()
            if args.only == "throughput":
                return 0
            for mode, name in (
                ("iterator", "aiomqtt's message iterator"),
                ("tap", "the scorer's tap"),
            ):
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
            print(
                f"| `Scorer.score_batch` alone (1,000-sensor batches, same process) | {lib:,.0f} |"
            )
            print("\n| stage (raw cost, this process, same run) | µs per reading |\n|---|---|")
            for name, us in stage_costs(models, sim):
                print(f"| {name} | {us:,.1f} |")
            for per in (1, 50):
                us = process_cost(models, args.sensors, per, 50 * args.sensors)
                print(
                    f"| `ScorerWorker._process` (whole batch step), {per} per message | {us:,.1f} |"
                )
        print("\n| `store_events`, one event, same server | p50 ms | p99 ms |\n|---|---|---|")
        for name, p50, p99 in store_costs(pg, db, [s.sensor_id for s in sim.sensors], 200):
            print(f"| {name} | {p50:.2f} | {p99:.2f} |")
        with open("/proc/loadavg") as f:
            print(f"\nload average during the run (1/5/15 min): {' '.join(f.read().split()[:3])}")
        print(f"machine speed at the end: {cpu_probe_ms():.0f} ms")
    finally:
        for p in scorers:  # never leave a scorer behind, even when a figure failed
            p.stop()
        broker.destroy()
        pg.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
