"""Prometheus metrics helpers and the small health/metrics HTTP server every worker runs.

Metric names follow ``sensorpipe_<component>_<thing>_<unit|total>`` in base units (seconds, bytes).
Each component defines its metrics in its own module against a ``CollectorRegistry`` it is given,
so tests can build many workers in one process without name clashes.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

# Latency buckets from 0.5 ms to 10 s: alert latency lives at the low end, flushes at the high end.
LATENCY_BUCKETS_S = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
SIZE_BUCKETS = (1, 5, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 50000)


@dataclass
class Readiness:
    """Named readiness checks; the worker is ready when every check passes."""

    checks: dict[str, Callable[[], tuple[bool, str]]] = field(default_factory=dict)

    def add(self, name: str, check: Callable[[], tuple[bool, str]]) -> None:
        self.checks[name] = check

    def report(self) -> tuple[bool, dict[str, str]]:
        detail: dict[str, str] = {}
        ok = True
        for name, check in self.checks.items():
            try:
                passed, reason = check()
            except Exception as exc:  # a broken check is "not ready", never a crashed server
                passed, reason = False, f"check failed: {exc}"
            ok = ok and passed
            detail[name] = "ok" if passed else reason
        return ok, detail


def _handler(registry: CollectorRegistry, readiness: Readiness) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif self.path == "/health":
                self._send(200, "application/json", b'{"status":"ok"}')
            elif self.path == "/health/ready":
                ok, detail = readiness.report()
                body = json.dumps({"status": "ready" if ok else "not_ready", "checks": detail})
                self._send(200 if ok else 503, "application/json", body.encode())
            else:
                self._send(404, "application/json", b'{"detail":"not found"}')

        def _send(self, status: int, ctype: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # scrapes every few seconds would drown the worker's own log

    return Handler


class MetricsServer:
    """``/metrics``, ``/health`` and ``/health/ready`` on a worker's own port (daemon thread)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        readiness: Readiness,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._server = ThreadingHTTPServer((host, port), _handler(registry, readiness))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> MetricsServer:
        self._thread.start()
        log.info("metrics and health on port %d", self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
