"""A load generator that costs the machine almost nothing: MQTT 3.1.1 PUBLISH packets (QoS 1)
written straight to a socket, PUBACKs drained by a thread that only counts them.

Why: a benchmark of a service's latency at thousands of messages per second must not spend the
CPU it is measuring. On this 2-core machine paho's publisher (packet object, message info, its
network thread and the GIL between them) takes most of a core at 5,000 messages/s, and that core
is missing from the broker, the service and PostgreSQL. Real devices publish from other machines.
Here one publish is one ``sendall`` of a few dozen bytes.

Only what a benchmark publisher needs: CONNECT with a clean session, QoS 1 PUBLISH with packet
ids, PUBACK counting, DISCONNECT. No reconnect, no retransmission: a benchmark that loses its
connection fails.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

from core.settings import parse_mqtt_url

_PUBLISH_QOS1 = 0x32
_PUBACK = 0x40


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


class RawPublisher:
    """A connected MQTT 3.1.1 publisher with TCP_NODELAY; ``publish`` is one ``sendall``."""

    def __init__(self, url: str, client_id: str, *, keepalive_s: int = 60) -> None:
        target = parse_mqtt_url(url)
        self.sock = socket.create_connection((target.host, target.port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        body = _utf8("MQTT") + bytes([4, 0x02]) + struct.pack("!H", keepalive_s) + _utf8(client_id)
        self.sock.sendall(bytes([0x10]) + _remaining_length(len(body)) + body)
        connack = self._read_exact(4)
        if connack[0] != 0x20 or connack[3] != 0:
            raise ConnectionError(f"broker refused the connection: CONNACK {connack.hex()}")
        self.sent = 0
        self.acked = 0
        self.error: str | None = None
        self._next_id = 0
        self._reader = threading.Thread(target=self._drain, name="raw-puback", daemon=True)
        self._reader.start()

    def _read_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            buf += chunk
        return buf

    def _drain(self) -> None:
        """Count PUBACKs (4 bytes each: 0x40 0x02 id id); anything else is a protocol error."""
        pending = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            pending += chunk
            whole = len(pending) - len(pending) % 4
            if any(pending[i] != _PUBACK for i in range(0, whole, 4)):
                self.error = f"unexpected packet from the broker: {pending[:8].hex()}"
                return
            self.acked += whole // 4
            pending = pending[whole:]

    def publish(self, topic: str, payload: bytes) -> None:
        """Send one QoS 1 PUBLISH (the broker acknowledges it asynchronously)."""
        self._next_id = self._next_id % 65535 + 1
        variable = _utf8(topic) + struct.pack("!H", self._next_id)
        self.sock.sendall(
            bytes([_PUBLISH_QOS1])
            + _remaining_length(len(variable) + len(payload))
            + variable
            + payload
        )
        self.sent += 1

    def close(self, timeout_s: float = 30.0) -> None:
        """Wait (bounded) until every PUBLISH is acknowledged, then DISCONNECT."""
        deadline = time.monotonic() + timeout_s
        while self.acked < self.sent and not self.error and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            self.sock.sendall(b"\xe0\x00")
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._reader.join(timeout=5)
        if self.error:
            raise ConnectionError(self.error)
        if self.acked < self.sent:
            raise TimeoutError(
                f"{self.sent - self.acked} of {self.sent} publishes not acknowledged"
            )
