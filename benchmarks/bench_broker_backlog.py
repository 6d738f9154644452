"""Broker backlog benchmark: the repository's Mosquitto config holding an outage's backlog.

Measures what ``broker/mosquitto.conf``'s queue limits and autosave interval cost, on the real
broker started through ``broker/entrypoint.sh`` (as in tests/integration/test_broker_config.py):

* publish rate into the backlog (QoS 1, ~150-byte readings, ingestor offline);
* broker memory per queued message (RSS growth / messages);
* persistence store size per message, and the time of a full save (graceful stop);
* restart time with the backlog (load the store, listen again);
* drain rate of the backlog by a plain paho subscriber (the ingestor's session).

Usage::

    python benchmarks/bench_broker_backlog.py            # 300,000 queued readings
    python benchmarks/bench_broker_backlog.py --quick    # 50,000, a few seconds per figure
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.integration.test_broker_config import (
    BROKER_DIR,
    RepoBroker,
    _make_root,
    _mosquitto_binary,
    rewrite_config,
)
from tests.servers import free_port

PAYLOAD_BYTES = 150


def start_broker() -> RepoBroker:
    root = _make_root()
    shutil.copytree(BROKER_DIR, root / "config")
    port = free_port()
    (root / "mosquitto.conf").write_text(
        rewrite_config((BROKER_DIR / "mosquitto.conf").read_text(), port, root).replace(
            "log_type information\n", ""
        )  # one line per connection is noise here
    )
    passwords = {
        r: secrets.token_hex(8) for r in ("ingestor", "scorer", "api", "alerts", "simulator")
    }
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BROKER_CONFIG_DIR": str(root / "config"),
        "BROKER_RUN_DIR": str(root / "run"),
        "MQTT_DEVICES_FILE": str(root / "none"),
        **{f"MQTT_{r.upper()}_PASSWORD": p for r, p in passwords.items()},
    }
    broker = RepoBroker(
        root=root, port=port, env=env, passwords=passwords, binary=_mosquitto_binary()
    )
    broker.start()
    return broker


def client(broker: RepoBroker, user: str, client_id: str, *, clean: bool) -> mqtt.Client:
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    c.username_pw_set(user, broker.passwords[user])
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0 if clean else 3600
    connected = threading.Event()
    c.on_connect = lambda *_: connected.set()
    c.connect("127.0.0.1", broker.port, clean_start=clean, properties=props)
    c.loop_start()
    if not connected.wait(10):
        raise RuntimeError(f"{user} could not connect")
    return c


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def broker_pid(broker: RepoBroker) -> int:
    assert broker.proc is not None
    return broker.proc.pid  # entrypoint.sh execs mosquitto: same pid


def fill(broker: RepoBroker, n: int) -> float:
    """Publish n readings for an offline persistent subscriber; return readings/s."""
    sub = client(broker, "ingestor", "bench-ingestor", clean=False)
    done = threading.Event()
    sub.on_subscribe = lambda *_: done.set()
    sub.subscribe("sensors/+/readings", qos=1)
    done.wait(10)
    sub.disconnect()
    sub.loop_stop()
    pub = client(broker, "simulator", "bench-publisher", clean=True)
    acked = 0
    all_acked = threading.Event()

    def on_publish(*_: object) -> None:
        nonlocal acked
        acked += 1
        if acked == n:
            all_acked.set()

    pub.on_publish = on_publish
    body = {"sensor_id": "bench-1", "value": 21.5, "timestamp": 1795650000.0, "pad": ""}
    body["pad"] = "x" * max(0, PAYLOAD_BYTES - len(json.dumps(body)))
    payload = json.dumps(body).encode()
    t0 = time.perf_counter()
    # Publish in windows of 5,000, waiting for their acknowledgements: paho's own queue is not
    # meant to hold hundreds of thousands of messages (a larger backlog stalled it here).
    for i in range(n):
        pub.publish(f"sensors/bench-{i % 50}/readings", payload, qos=1)
        if (i + 1) % 5000 == 0:
            deadline = time.monotonic() + 60
            while acked < i + 1 - 1000 and time.monotonic() < deadline:
                time.sleep(0.005)
    if not all_acked.wait(600):
        raise RuntimeError(f"only {acked} of {n} publishes acknowledged")
    elapsed = time.perf_counter() - t0
    pub.disconnect()
    pub.loop_stop()
    return n / elapsed


def drain(broker: RepoBroker, n: int) -> float:
    got = 0
    finished = threading.Event()
    first: list[float] = []

    def on_message(*_: object) -> None:
        nonlocal got
        if not first:
            first.append(time.perf_counter())
        got += 1
        if got == n:
            finished.set()

    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="bench-ingestor", protocol=MQTTProtocolVersion.MQTTv5
    )
    c.username_pw_set("ingestor", broker.passwords["ingestor"])
    c.on_message = on_message
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0
    t0 = time.perf_counter()
    c.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
    c.loop_start()
    if not finished.wait(600):
        raise RuntimeError(f"drained {got} of {n}")
    rate = n / (time.perf_counter() - t0)
    c.disconnect()
    c.loop_stop()
    return rate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="50,000 messages instead of 300,000")
    ap.add_argument("--messages", type=int, default=None)
    args = ap.parse_args()
    n = args.messages or (50_000 if args.quick else 300_000)
    broker = start_broker()
    try:
        rss0 = rss_bytes(broker_pid(broker))
        publish_rate = fill(broker, n)
        time.sleep(1.0)
        rss1 = rss_bytes(broker_pid(broker))
        t0 = time.perf_counter()
        broker.stop(signal.SIGTERM)  # a graceful stop writes the whole store
        save_s = time.perf_counter() - t0
        store = broker.root / "data" / "mosquitto.db"
        store_bytes = store.stat().st_size
        t0 = time.perf_counter()
        broker.start()
        restart_s = time.perf_counter() - t0
        drain_rate = drain(broker, n)
    finally:
        broker.stop(signal.SIGKILL)
        shutil.rmtree(broker.root, ignore_errors=True)
    rows = [
        ("queued readings", f"{n:,}", f"QoS 1, {PAYLOAD_BYTES}-byte payloads"),
        ("publish rate into backlog", f"{publish_rate:,.0f} msg/s", "one paho publisher"),
        ("broker memory per message", f"{(rss1 - rss0) / n:,.0f} B", "RSS growth / messages"),
        ("store size per message", f"{store_bytes / n:,.0f} B", f"{store_bytes / 1e6:,.1f} MB"),
        ("full save (graceful stop)", f"{save_s:.2f} s", "what each autosave rewrites"),
        ("restart with backlog", f"{restart_s:.2f} s", "load store, listen"),
        ("drain rate", f"{drain_rate:,.0f} msg/s", "one plain paho subscriber"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\nbroker backlog, repository config (broker/mosquitto.conf), {n:,} messages")
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>14}  {note}")
    limit_msgs = 2_000_000
    per_msg = (rss1 - rss0) / n
    print(
        f"\n  at max_queued_messages={limit_msgs:,}: ~{per_msg * limit_msgs / 1e9:.2f} GB of "
        f"broker memory, ~{store_bytes / n * limit_msgs / 1e9:.2f} GB store, "
        f"full save ~{save_s * limit_msgs / n:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
