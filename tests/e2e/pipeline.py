"""The whole pipeline as real processes, for end-to-end tests and the dashboard screenshot.

``Pipeline`` runs ``sensorpipe ingest``, ``score``, ``api`` and ``simulate`` as child processes
against a given database and broker (the test fixtures' private ones), each with its own ports and
client ids and a log file, and stops them in reverse order with SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from tests.servers import REPO, free_port

# The real command line, as a deployment runs it.
SENSORPIPE = [sys.executable, "-m", "sensorpipe"]


def http_json(
    url: str, *, key: str | None = None, body: Any = None, timeout_s: float = 10.0
) -> tuple[int, Any]:
    """(status, parsed JSON body) of one request; errors are answers too."""
    headers = {"Accept": "application/json"}
    if key:
        headers["X-API-Key"] = key
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310 - loopback only
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


@dataclass
class Pipeline:
    db_url: str
    mqtt_url: str
    models_dir: Path
    workdir: Path
    api_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def __post_init__(self) -> None:
        self.ports = {"INGEST_METRICS_PORT": free_port(), "SCORER_METRICS_PORT": free_port()}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        run_id = self.run_id
        return {
            **os.environ,
            "DATABASE_URL": self.db_url,
            "MQTT_URL": self.mqtt_url,
            "MODELS_DIR": str(self.models_dir),
            "LOG_FORMAT": "text",
            "LOG_LEVEL": "INFO",
            "API_PORT": str(self.api_port),
            "API_HOST": "127.0.0.1",
            "API_MQTT_CLIENT_ID": f"e2e-api-{run_id}",
            "INGEST_CLIENT_ID": f"e2e-ingestor-{run_id}",
            "INGEST_METRICS_HOST": "127.0.0.1",
            "SCORER_CLIENT_ID": f"e2e-scorer-{run_id}",
            **{name: str(port) for name, port in self.ports.items()},
            "PYTHONUNBUFFERED": "1",
        }

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        # The child keeps its own copy of the log's descriptor; ours is closed at once.
        with (self.workdir / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(
                [*SENSORPIPE, *args],
                env=self.env(),
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs[name] = proc
        return proc

    def run(self, name: str, *args: str, timeout_s: float = 120.0) -> None:
        """A command that must finish (a backfill, a key) and succeed."""
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            done = subprocess.run(
                [*SENSORPIPE, *args],
                env=self.env(),
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout_s,
                check=False,
            )
        if done.returncode != 0:
            raise RuntimeError(f"sensorpipe {name} exited {done.returncode}: {self.log(name)}")

    def log(self, name: str, tail: int = 3000) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def alive(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log(name)}")

    def wait_api(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.alive("api")
            with contextlib.suppress(OSError):
                status, _ = http_json(f"{self.base_url}/health", timeout_s=2)
                if status == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"the API did not answer /health:\n{self.log('api')}")

    def wait_ready(self, name: str, port: int, timeout_s: float = 60.0) -> None:
        """Until a worker's ``/health/ready`` answers 200 (database, broker, models all ok)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.alive(name)
            with contextlib.suppress(OSError):
                status, _ = http_json(f"http://127.0.0.1:{port}/health/ready", timeout_s=2)
                if status == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"{name} not ready after {timeout_s}s:\n{self.log(name)}")

    def wait_rows(self, n: int, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while (got := self.count("SELECT count(*) FROM sensor_readings")) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{got} of {n} readings stored:\n{self.log('ingest')}")
            time.sleep(0.2)

    def create_key(self, name: str, scopes: list[str]) -> str:
        from api.security import create_key

        with psycopg.connect(self.db_url) as conn:
            key, _ = create_key(conn, name, scopes)
        return key

    def stop(self, timeout_s: float = 20.0) -> None:
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def count(self, sql: str, *params: Any) -> int:
        with psycopg.connect(self.db_url) as conn:
            row = conn.execute(sql, params).fetchone()
        return int(row[0]) if row else 0
