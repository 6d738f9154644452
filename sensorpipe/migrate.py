"""Schema migrations through Alembic, configured in code (no alembic.ini needed at run time)."""

from __future__ import annotations

import io
from pathlib import Path

from alembic import command
from alembic.config import Config


def migrations_dir() -> Path:
    here = Path(__file__).resolve().parents[1] / "migrations"
    if here.is_dir():
        return here
    cwd = Path.cwd() / "migrations"
    if cwd.is_dir():
        return cwd
    raise FileNotFoundError("the migrations/ folder was not found beside the package or in the cwd")


def alembic_config(
    dsn: str, *, timescale: str = "auto", stdout: io.StringIO | None = None
) -> Config:
    cfg = Config(stdout=stdout) if stdout is not None else Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    # env.py reads the url and the timescale mode from -x arguments.
    cfg.cmd_opts = _XArgs([f"url={dsn}", f"timescale={timescale}"])  # type: ignore[assignment]
    return cfg


class _XArgs:
    def __init__(self, x: list[str]) -> None:
        self.x = x


def upgrade(dsn: str, revision: str = "head", *, timescale: str = "auto") -> None:
    command.upgrade(alembic_config(dsn, timescale=timescale), revision)


def downgrade(dsn: str, revision: str = "base", *, timescale: str = "auto") -> None:
    command.downgrade(alembic_config(dsn, timescale=timescale), revision)


def render_sql(
    dsn: str = "postgresql://localhost/sensorpipe", revision: str = "head", *, timescale: str = "on"
) -> str:
    """The SQL ``upgrade`` would run, rendered offline (for review of the TimescaleDB path)."""
    buf = io.StringIO()
    cfg = alembic_config(dsn, timescale=timescale, stdout=buf)
    cfg.output_buffer = buf
    command.upgrade(cfg, revision, sql=True)
    return buf.getvalue()
