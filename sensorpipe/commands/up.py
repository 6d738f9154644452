"""``sensorpipe up``: the whole pipeline on this machine, with simulated sensors.

Runs the same commands a deployment runs (``migrate`` once, then ``ingest``, ``score``, ``api``
and ``simulate`` as child processes), prefixes their output, and stops them all on Ctrl-C or
SIGTERM, in reverse order so the simulator stops before the workers drain.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

HELP = "run the whole pipeline locally (ingestor, scorer, API + dashboard, simulated sensors)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sensors", type=int, default=12, help="simulated sensors (0: no simulator)")
    p.add_argument("--rate", type=float, default=1.0, help="readings per second per sensor")
    p.add_argument(
        "--anomaly-rate", type=float, default=0.002, help="injected anomalies per reading"
    )
    p.add_argument("--host", default="127.0.0.1", help="API / dashboard host")
    p.add_argument("--port", type=int, default=8000, help="API / dashboard port")
    p.add_argument("--no-migrate", action="store_true", help="skip `sensorpipe migrate`")
    p.add_argument("--stop-timeout-s", type=float, default=20.0, help="grace period on shutdown")


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    pump: threading.Thread | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        # argv is our own interpreter running our own CLI: no untrusted input.
        self.proc = subprocess.Popen(  # noqa: S603
            self.argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.pump = threading.Thread(target=self._pump, daemon=True, name=f"pump-{self.name}")
        self.pump.start()

    def _pump(self) -> None:
        if self.proc is None or self.proc.stdout is None:
            return
        for line in self.proc.stdout:
            sys.stdout.write(f"{self.name:>9} | {line.decode(errors='replace')}")
            sys.stdout.flush()

    def stop(self, timeout_s: float) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=5)


def _children(args: argparse.Namespace) -> list[Child]:
    exe = [sys.executable, "-m", "sensorpipe"]
    children = [
        Child("ingestor", [*exe, "ingest"]),
        Child("scorer", [*exe, "score"]),
        Child("api", [*exe, "api", "--host", args.host, "--port", str(args.port)]),
    ]
    if args.sensors > 0:
        children.append(
            Child(
                "simulator",
                [
                    *exe,
                    "simulate",
                    "--sensors",
                    str(args.sensors),
                    "--rate",
                    str(args.rate),
                    "--anomaly-rate",
                    str(args.anomaly_rate),
                    "--qos",
                    "1",
                ],
            )
        )
    return children


def run(args: argparse.Namespace) -> int:
    env = {**os.environ, "LOG_FORMAT": os.environ.get("LOG_FORMAT", "text")}
    for var in ("DATABASE_URL", "MQTT_URL"):
        if not env.get(var):
            print(f"sensorpipe up: {var} is not set (see .env.example)", file=sys.stderr)
            return 2
    if not args.no_migrate:
        subprocess.run([sys.executable, "-m", "sensorpipe", "migrate"], env=env, check=True)
    key = _dashboard_key(env)
    children = _children(args)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    for child in children:
        child.start(env)
    print(
        f"\nsensorpipe is up: dashboard http://{args.host}:{args.port}/  "
        f"(API key for the dashboard: {key})\nCtrl-C stops everything.\n",
        flush=True,
    )
    try:
        while not stopping.is_set():
            dead = [c for c in children if c.proc is not None and c.proc.poll() is not None]
            if dead:
                print(
                    f"sensorpipe up: {dead[0].name} exited with {dead[0].proc.returncode}"
                    if dead[0].proc
                    else "",
                    file=sys.stderr,
                )
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    codes = [c.stop(args.stop_timeout_s) for c in reversed(children)]
    return 0 if all(code in (0, None, -signal.SIGTERM) for code in codes) else 1


def _dashboard_key(env: dict[str, str]) -> str:
    """A fresh read-only key for the local dashboard (keys are shown once, so one per run)."""
    name = f"local-dashboard-{int(time.time())}"
    out = subprocess.run(  # noqa: S603 - our own CLI
        [
            sys.executable,
            "-m",
            "sensorpipe",
            "keys",
            "create",
            "--name",
            name,
            "--scopes",
            "reports:read,ml:predict",
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.splitlines()[0].strip()  # the key; the next line is a note about it
