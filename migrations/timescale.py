"""Deciding whether a migration takes the TimescaleDB path.

Kept beside the migrations (not in ``core``) because only Alembic scripts use it.
"""

from __future__ import annotations

from alembic import context, op
from sqlalchemy import text


def use_timescale() -> bool:
    """``-x timescale=on|off|auto``; ``auto`` asks ``pg_available_extensions`` (offline: off)."""
    mode = context.get_x_argument(as_dictionary=True).get("timescale", "auto").lower()
    if mode in ("on", "true", "1"):
        return True
    if mode in ("off", "false", "0") or context.is_offline_mode():
        return False
    row = (
        op.get_bind()
        .execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"))
        .first()
    )
    return row is not None
