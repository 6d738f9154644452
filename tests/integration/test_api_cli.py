"""``sensorpipe api`` serves the app with uvicorn and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.servers import REPO, MosquittoServer, free_port

pytestmark = pytest.mark.integration


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback test server
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_serve_ready_then_sigterm_exits_zero(
    db_url: str, broker: MosquittoServer, api_models_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "MQTT_URL": broker.url,
        "MODELS_DIR": str(api_models_dir),
        "LOG_FORMAT": "json",
    }
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        _serve_and_stop(port, env, out, log)
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    assert any(x["msg"] == "serving models anomaly_detector:v1+forecaster:v1" for x in lines)


def _serve_and_stop(port: int, env: dict[str, str], out: Any, log: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sensorpipe", "api", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        status = 0
        while time.monotonic() < deadline:
            try:
                status, body = _get(f"http://127.0.0.1:{port}/health/ready")
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        assert status == 200, log.read_text()
        assert body["checks"] == {"database": "ok", "broker": "ok", "models": "ok"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
