"""The README's one-line publish, run exactly as documented (only the port differs), is stored."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest

from tests.integration._ingestor_harness import ProcessIngestor, count_readings, wait_until
from tests.servers import MosquittoServer

pytestmark = pytest.mark.integration

# Copied verbatim into README.md ("Send a reading"). Keep the two in sync.
README_SNIPPET = r"""
mosquitto_pub -h localhost -q 1 -t sensors/demo-1/readings \
  -m '{"sensor_type": "temperature", "value": 21.5, "unit": "Cel", "timestamp": '"$(date +%s)"'}'
"""


def test_readme_mosquitto_pub_example_is_stored(
    db_url: str, broker: MosquittoServer, tmp_path: Path
) -> None:
    """Done-when 7, through the real process started the way the README starts it."""
    ing = ProcessIngestor(db_url, broker.url, "ing-readme", tmp_path / "ingestor.log").start()
    try:
        cmd = README_SNIPPET.replace("-h localhost", f"-h 127.0.0.1 -p {broker.port}", 1)
        subprocess.run(["bash", "-c", cmd], check=True, timeout=10)
        wait_until(lambda: count_readings(db_url, "demo-1") == 1, 10, "the reading")
        assert ing.terminate() == 0
    finally:
        ing.close()
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT s.sensor_type, s.unit, r.value, r.received_at - r.time "
            "FROM sensor_readings r JOIN sensors s USING (sensor_id)"
        ).fetchone()
    assert row is not None
    sensor_type, unit, value, lag = row
    assert (sensor_type, unit, value) == ("temperature", "Cel", 21.5)
    assert lag.total_seconds() < 10


def test_readme_carries_the_tested_snippet() -> None:
    """The command tested above is the one README.md shows, character for character."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert README_SNIPPET.strip() in readme
