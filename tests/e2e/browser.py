"""A small headless-Chromium driver over the Chrome DevTools Protocol (no downloads, no selenium).

It starts Debian's ``chromium`` with a private profile and ``--remote-debugging-port=0``, reads the
port Chromium chose from ``DevToolsActivePort``, and talks CDP to the page over a websocket
(``websockets`` is already installed as a uvicorn dependency). Everything the page logs is kept:
console calls, uncaught exceptions and browser log entries (failed loads, CSP violations), so a
test can assert that the page ran without errors.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

CHROMIUM = os.environ.get("SENSORPIPE_CHROMIUM", "/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
)


class BrowserError(RuntimeError):
    """Chromium did not start, or a CDP command failed."""


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One thing the page said: ``source`` is console / exception / log."""

    source: str
    level: str
    text: str
    url: str = ""

    def __str__(self) -> str:
        return f"[{self.source}:{self.level}] {self.text} {self.url}".strip()


def chromium_available() -> bool:
    return Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is not None


class Page:
    """One tab, driven synchronously: each command waits for its answer, collecting events."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._next_id = 0
        self.logs: list[LogEntry] = []

    def send(self, method: str, timeout_s: float = 30.0, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        msg_id = self._next_id
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError(f"no answer to {method} within {timeout_s}s")
            msg = json.loads(self.ws.recv(timeout=remaining))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg.get("result", {})
                return result
            self._event(msg)

    def _event(self, msg: dict[str, Any]) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.logs.append(LogEntry("console", params["type"], text))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text", "")
            self.logs.append(LogEntry("exception", "error", text, details.get("url", "")))
        elif method == "Log.entryAdded":
            entry = params["entry"]
            self.logs.append(LogEntry("log", entry["level"], entry["text"], entry.get("url", "")))

    def errors(self) -> list[LogEntry]:
        """Everything at error level, from any source."""
        return [e for e in self.logs if e.level in ("error", "assert")]

    def evaluate(self, expression: str) -> Any:
        result = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:80]!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 30.0, what: str = "") -> Any:
        """Poll ``expression`` until it is truthy; returns its value. An expression that throws
        (the document is between two loads) counts as not yet true."""
        deadline = time.monotonic() + timeout_s
        value: Any = None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except BrowserError as exc:
                value = exc
            if value and not isinstance(value, BrowserError):
                return value
            time.sleep(0.1)
        raise TimeoutError(
            f"{what or expression!r} still false after {timeout_s}s (last {value!r})"
        )

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'", what="page load")

    def type_text(self, text: str) -> None:
        """Type into the focused element, as a keyboard would."""
        self.send("Input.insertText", text=text)

    def press(self, key: str, code: str, key_code: int, *, shift: bool = False) -> None:
        base: dict[str, Any] = {
            "key": key,
            "code": code,
            "windowsVirtualKeyCode": key_code,
            "modifiers": 8 if shift else 0,
        }
        text: dict[str, Any] = {"text": "\r"} if key == "Enter" else {}
        self.send("Input.dispatchKeyEvent", type="keyDown", **base, **text)
        self.send("Input.dispatchKeyEvent", type="keyUp", **base)

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data["data"]))
        return path


class Chromium:
    """A headless Chromium with a throwaway profile; use as a context manager."""

    def __init__(self, width: int = 1440, height: int = 900) -> None:
        self.width = width
        self.height = height
        self.profile = Path(tempfile.mkdtemp(prefix="sensorpipe-chromium-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.page: Page | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Page:
        try:
            return self._start()
        except BaseException:
            self.__exit__()
            raise

    def _start(self) -> Page:
        with (self.profile / "stderr.log").open("wb") as stderr:
            self.proc = subprocess.Popen(
                [
                    CHROMIUM,
                    *FLAGS,
                    f"--user-data-dir={self.profile}",
                    "--remote-debugging-port=0",
                    f"--window-size={self.width},{self.height}",
                    "about:blank",
                ],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        ws_url = self._page_ws(self._devtools_port())
        ws = self._stack.enter_context(connect(ws_url, max_size=64 * 1024 * 1024, open_timeout=10))
        self.page = Page(ws)
        for domain in ("Page", "Runtime", "Log"):
            self.page.send(f"{domain}.enable")
        self.page.send(
            "Emulation.setDeviceMetricsOverride",
            width=self.width,
            height=self.height,
            deviceScaleFactor=1,
            mobile=False,
        )
        return self.page

    def _devtools_port(self, timeout_s: float = 30.0) -> int:
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise BrowserError(
                    f"chromium exited with {self.proc.returncode}: "
                    f"{(self.profile / 'stderr.log').read_text()[-2000:]}"
                )
            with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
                return int(marker.read_text().splitlines()[0])
            time.sleep(0.05)
        raise BrowserError("chromium did not open its DevTools port")

    @staticmethod
    def _page_ws(port: int) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            targets = json.load(resp)
        for target in targets:
            if target.get("type") == "page":
                return str(target["webSocketDebuggerUrl"])
        raise BrowserError(f"no page target among {targets}")

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()
        if self.proc is not None and self.proc.poll() is None:
            # Chromium's helper processes share its session: end the whole group we started.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        shutil.rmtree(self.profile, ignore_errors=True)
