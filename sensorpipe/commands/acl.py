"""``sensorpipe acl``: render broker ACL entries for multi-sensor devices from the sensor registry.

A device that carries several sensors (``boiler-3.temp``, ``boiler-3.pressure``) logs in to the
broker as its device id, which the generic ``pattern write sensors/%u/#`` rule of ``broker/acl``
does not cover. This command lists, for every ``sensors.device_id``, the sensor topics that device
may write, in Mosquitto's ``acl_file`` syntax::

    sensorpipe acl --out broker/acl.d/devices.acl && docker compose restart broker

``broker/entrypoint.sh`` appends every ``broker/acl.d/*.acl`` to the ACL at start.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

HELP = "render broker ACL entries for multi-sensor devices from the sensor registry"

# MQTT users of the pipeline (broker/acl, broker/entrypoint.sh): a device id equal to one of them
# would add topics to that user's grants, so such registry entries are refused.
RESERVED_USERS = frozenset({"ingestor", "scorer", "api", "simulator", "alerts", "healthcheck"})

QUERY = (
    "SELECT device_id, sensor_id FROM sensors WHERE device_id IS NOT NULL "
    "ORDER BY device_id, sensor_id"
)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database-url", default=None, help="default: $DATABASE_URL")
    p.add_argument(
        "--out", type=Path, default=None, help="write to this file (atomically) instead of stdout"
    )


def render_acl(rows: Iterable[tuple[str, str]], *, generated_at: datetime | None = None) -> str:
    """ACL text granting each device write access to its sensors' topics.

    Raises ``ConfigError`` for a device id that is not a valid MQTT user name (the sensor id
    rule: it ends up in topic grants) or that names a pipeline user.

    >>> print(render_acl([("boiler-3", "boiler-3.temp"), ("boiler-3", "boiler-3.pressure")],
    ...                  generated_at=datetime(2026, 1, 1, tzinfo=UTC)), end="")
    # Rendered by `sensorpipe acl` from the sensor registry at 2026-01-01T00:00:00+00:00.
    # Do not edit: re-render after changing sensors.device_id, then restart the broker.
    <BLANKLINE>
    user boiler-3
    topic write sensors/boiler-3.pressure/#
    topic write sensors/boiler-3.temp/#
    """
    from core.errors import ConfigError
    from core.topics import check_sensor_id, is_valid_sensor_id

    devices: dict[str, set[str]] = {}
    for device_id, sensor_id in rows:
        if not is_valid_sensor_id(device_id):
            raise ConfigError(f"device id {device_id!r} is not a valid MQTT user name")
        if device_id in RESERVED_USERS:
            raise ConfigError(f"device id {device_id!r} is reserved for a pipeline user")
        devices.setdefault(device_id, set()).add(check_sensor_id(sensor_id))
    stamp = (generated_at or datetime.now(UTC)).isoformat()
    lines = [
        f"# Rendered by `sensorpipe acl` from the sensor registry at {stamp}.",
        "# Do not edit: re-render after changing sensors.device_id, then restart the broker.",
    ]
    for device_id in sorted(devices):
        lines += ["", f"user {device_id}"]
        lines += [f"topic write sensors/{s}/#" for s in sorted(devices[device_id])]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    import psycopg

    from core.errors import ConfigError

    url = args.database_url or os.environ.get("DATABASE_URL")
    if not url:
        raise ConfigError("no database: pass --database-url or set DATABASE_URL")
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
        rows = [(str(d), str(s)) for d, s in conn.execute(QUERY).fetchall()]
    text = render_acl(rows)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(args.out)
    devices = len({d for d, _ in rows})
    print(f"acl: {devices} devices, {len(rows)} sensors -> {args.out}", file=sys.stderr)
    return 0
