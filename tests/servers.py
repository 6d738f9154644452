"""Private PostgreSQL and Mosquitto instances for tests and benchmarks.

Each instance has its own port and data directory, so a test can stop, kill and restart it without
touching the machine's shared services. PostgreSQL refuses to run as root: when we are root, the
cluster is created and run as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]


class ServiceUnavailable(RuntimeError):
    """The binaries for a service are not installed here."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.5),
        ):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s")


def pg_bindir() -> Path:
    for cand in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2])):
        if Path(cand, "initdb").exists():
            found = Path(cand)
    with contextlib.suppress(NameError):
        return found
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise ServiceUnavailable("PostgreSQL server binaries (initdb, pg_ctl) not found")


class PgServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1:<port>."""

    def __init__(self, port: int | None = None) -> None:
        self.bindir = pg_bindir()
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="sensorpipe-pg-"))
        self.datadir = self.root / "data"
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--locale=C.UTF-8",
        )
        with (self.datadir / "postgresql.conf").open("a") as f:
            f.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\n"
                # fsync only protects against an OS crash, which tests never simulate.
                "fsync = off\nfull_page_writes = off\nmax_connections = 200\n"
                "shared_buffers = 128MB\n"
            )

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bindir / tool), *args]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> PgServer:
        self._run(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-l",
            str(self.root / "log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "-t", "60", "stop")

    def create_db(self, name: str, template: str | None = None) -> str:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            tmpl = f" TEMPLATE {template}" if template else ""
            conn.execute(f'CREATE DATABASE "{name}"{tmpl}')
        return self.dsn(name)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


MOSQUITTO_TEMPLATE = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {root}/
autosave_interval 1
set_tcp_nodelay true
max_queued_messages 1000000
max_queued_bytes 0
max_inflight_messages 1000
persistent_client_expiration 1d
log_dest file {root}/mosquitto.log
log_type error
log_type warning
log_type notice
"""


class MosquittoServer:
    """A throwaway Mosquitto broker. ``config`` may replace the default template (a test of the
    repository's ``broker/`` config passes its own)."""

    def __init__(self, port: int | None = None, config: str | None = None) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise ServiceUnavailable("mosquitto is not installed")
        self.binary = binary
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="sensorpipe-mqtt-"))
        if os.geteuid() == 0:
            # Started as root, mosquitto drops to the `mosquitto` user: let it write its store.
            with contextlib.suppress(KeyError):
                pw = pwd.getpwnam("mosquitto")
                os.chown(self.root, pw.pw_uid, pw.pw_gid)
        text = config if config is not None else MOSQUITTO_TEMPLATE
        self.conf = self.root / "mosquitto.conf"
        self.conf.write_text(text.format(port=self.port, root=self.root))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> MosquittoServer:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            wait_port(self.port)
        except TimeoutError:
            self.proc.kill()
            self.proc.wait(timeout=5)
            err = self.proc.stderr.read().decode() if self.proc.stderr else ""
            if self.proc.stderr:
                self.proc.stderr.close()  # else an unraisable ResourceWarning fails the test
            raise RuntimeError(f"mosquitto did not start: {err}") from None
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM is a graceful stop (the store is saved); SIGKILL is a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()  # else an unraisable ResourceWarning fails the test
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


def migrate(dsn: str) -> None:
    """Run the project's Alembic migrations to head on ``dsn``."""
    from sensorpipe.migrate import upgrade

    upgrade(dsn)
