"""Dashboard under load: 100 sensors × 10 readings/s into a live page, in headless Chromium.

A private Mosquitto and PostgreSQL, the real API (``sensorpipe api``) and the page with one
sensor view open. A publisher thread sends ``--sensors`` × ``--rate`` readings per second (one
MQTT message each, QoS 0) for ``--duration`` seconds. Measured in the same run:

* the publish rate actually achieved (the raw limit of this machine's publisher + broker);
* the API's stream hub: messages/s, batches/s, points per batch, drops and thinning;
* the page: time to apply one batch (mean/max), main-thread stalls (a 50 ms timer's lateness,
  p95/max), newest-reading age when shown (device clock → screen), batches lost by the page;
* API process CPU (% of one core) while streaming.

Usage::

    .venv/bin/python benchmarks/bench_dashboard.py            # 100 × 10/s for 30 s
    .venv/bin/python benchmarks/bench_dashboard.py --quick    # 8 s, for iteration
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.wire import Reading, encode_reading  # noqa: E402
from simulators.simulation import make_sensors  # noqa: E402
from tests.e2e.browser import Chromium  # noqa: E402
from tests.e2e.pipeline import Pipeline, http_json  # noqa: E402
from tests.servers import MosquittoServer, PgServer, migrate  # noqa: E402

# Lateness of a 50 ms timer: how long the page's main thread was busy when it should have run.
PROBE_JS = """(() => {
  window.__lag = [];
  let last = performance.now();
  setInterval(() => { const now = performance.now(); window.__lag.push(now - last - 50);
                      last = now; }, 50);
  window.__ages = [];
  setInterval(() => { const a = Number(document.body.dataset.lagMs);
                      if (a) window.__ages.push(a); }, 100);
})()"""


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def publish(url_port: int, ids: list[str], rate: float, duration_s: float, sent: list[int]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-dashboard-pub")
    client.connect("127.0.0.1", url_port)
    client.loop_start()
    tick = 1.0 / rate
    start = time.monotonic()
    k = 0
    try:
        while (now := time.monotonic()) - start < duration_s:
            due = start + k * tick
            if now < due:
                time.sleep(due - now)
            stamp = datetime.now(UTC)
            for i, sid in enumerate(ids):
                payload = encode_reading(
                    Reading(sensor_id=sid, time=stamp, value=20.0 + (k + i) % 7)
                )
                client.publish(f"sensors/{sid}/readings", payload, qos=0)
            sent[0] += len(ids)
            k += 1
    finally:
        client.loop_stop()
        client.disconnect()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sensors", type=int, default=100)
    ap.add_argument("--rate", type=float, default=10.0, help="readings/s per sensor")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    ap.add_argument("--quick", action="store_true", help="8 s of load")
    args = ap.parse_args()
    duration = 8.0 if args.quick else args.duration
    specs = make_sensors(args.sensors)
    ids = [s.sensor_id for s in specs]

    pg = PgServer().start()
    broker = MosquittoServer().start()
    work = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    pipe: Pipeline | None = None
    try:
        dsn = pg.create_db("sensorpipe")
        migrate(dsn)
        with psycopg.connect(dsn) as conn:
            for s in specs:
                conn.execute(
                    "INSERT INTO sensors (sensor_id, sensor_type, unit, "
                    "expected_interval_s) VALUES (%s, %s, %s, %s)",
                    (s.sensor_id, s.sensor_type, s.unit, 1.0 / args.rate),
                )
        pipe = Pipeline(dsn, broker.url, work / "models", work)
        pipe.start("api", "api")
        pipe.wait_api()
        key = pipe.create_key("bench-dashboard", ["reports:read"])
        with Chromium(1440, 900) as page:
            page.goto(f"{pipe.base_url}/")
            page.wait_for("document.body.dataset.view === 'key'", 15)
            page.evaluate(f"localStorage.setItem('sensorpipe.apiKey', {json.dumps(key)})")
            page.goto(f"{pipe.base_url}/#/sensor/{ids[0]}")
            page.send("Page.reload")  # a hash change alone would not restart the page
            page.wait_for("document.body.dataset.stream === 'live'", 20)
            page.evaluate(PROBE_JS)
            cpu0, t0 = cpu_s(pipe.procs["api"].pid), time.monotonic()
            sent = [0]
            publisher = threading.Thread(
                target=publish, args=(broker.port, ids, args.rate, duration, sent)
            )
            publisher.start()
            publisher.join()
            time.sleep(1.0)  # the last batches reach the page
            elapsed = time.monotonic() - t0
            api_cpu = (cpu_s(pipe.procs["api"].pid) - cpu0) / elapsed * 100
            body = page.evaluate("({...document.body.dataset})")
            lag = page.evaluate("window.__lag")
            ages = page.evaluate("window.__ages")
            shown = page.evaluate("document.getElementById('sensor-table').dataset.count")
            chart = page.evaluate("document.getElementById('chart').dataset.readings")
            # The key has no ml:predict (no models here): that one refused call is expected.
            errors = [e for e in page.errors() if "/api/v1/predict" not in e.url]
        _, stats = http_json(f"{pipe.base_url}/api/v1/stream/stats", key=key)
    finally:
        if pipe is not None:
            pipe.stop()
        broker.destroy()
        pg.destroy()

    rows = [
        ("load", f"{args.sensors} sensors × {args.rate:g}/s for {duration:g} s"),
        ("published (raw limit of this run)", f"{sent[0] / duration:,.0f} readings/s"),
        ("hub received", f"{stats['readings']:,} readings ({stats['messages']:,} messages)"),
        (
            "hub batches",
            f"{stats['batches'] / elapsed:.1f}/s, "
            f"{stats['readings'] / max(1, stats['batches']):.0f} points per batch",
        ),
        (
            "hub drops (slow client / buffer / thinned)",
            f"{stats['dropped_batches']} / {stats['dropped_points']} / {stats['decimated_points']}",
        ),
        ("page batches applied", f"{body.get('batches')} (lost: {body.get('droppedBatches', 0)})"),
        (
            "page time per batch mean / max",
            f"{body.get('batchMsMean')} / {body.get('batchMsMax')} ms",
        ),
        ("page main-thread stall p95 / max", f"{pct(lag, 0.95):.1f} / {max(lag):.1f} ms"),
        ("reading age on screen p50 / p95", f"{pct(ages, 0.5):.0f} / {pct(ages, 0.95):.0f} ms"),
        ("sensors in the overview", f"{shown}; points in the open chart: {chart}"),
        ("API CPU while streaming", f"{api_cpu:.0f}% of one core"),
        ("console errors", str(len(errors))),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\n{'dashboard under load':<{width}} | value")
    print(f"{'-' * width}-|-{'-' * 40}")
    for name, value in rows:
        print(f"{name:<{width}} | {value}")
    for e in errors:
        print(f"  {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
