"""The dashboard in headless Chromium against the real pipeline.

Simulated sensors publish over MQTT; the real ingestor stores their readings, the real scorer
scores them and publishes alerts, and the real API serves the page and its live stream. The test
types an API key like an operator, checks the overview, opens a sensor, checks that readings and
the forecast band are drawn (the page exposes point counts as data attributes, and the canvas is
sampled for the band's and the line's colours), injects an anomaly on the broker and waits for its
marker and alert to appear without a reload. The browser's console must stay free of errors.
Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core.settings import parse_mqtt_url
from core.topics import readings_topic
from core.wire import Reading, encode_reading
from simulators.simulation import SensorSpec, make_sensors
from tests.e2e.browser import Chromium, Page, chromium_available
from tests.e2e.pipeline import Pipeline, http_json
from tests.servers import REPO, MosquittoServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ARTIFACTS = REPO / "test-artifacts"
SENSORS = make_sensors(4)
RATE = 10  # readings per second per sensor
WARM_READINGS = 200  # per sensor before the page is opened: past the scorer's 100-reading warm-up
# The injected anomaly sits this many 95 % half-bands (1.96 sigma each) above the current value:
# about 24 sigma, unmistakable, yet small enough for the band to stay visible on the chart.
SPIKE_HALF_BANDS = 12.0

# Counting pixels of the chart's colours proves the canvas really shows them. The canvas is
# transparent: band fills are purple (123, 63, 181) at low alpha; the reading line is #0b5cad.
PIXELS_JS = """(() => {
  const c = document.querySelector('#chart canvas');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const near = (i, r, g, b) => Math.abs(d[i] - r) < 24 && Math.abs(d[i + 1] - g) < 24
    && Math.abs(d[i + 2] - b) < 24;
  let band = 0, line = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] > 10 && d[i + 3] < 128 && near(i, 123, 63, 181)) band++;
    if (d[i + 3] > 200 && near(i, 11, 92, 173)) line++;
  }
  return {band, line};
})()"""


def _require_chromium() -> None:
    if not chromium_available():
        if os.environ.get("SENSORPIPE_REQUIRE_SERVICES") == "1":
            pytest.fail("chromium is not installed (scripts/system-deps.sh installs it)")
        pytest.skip("chromium is not installed")


@pytest.fixture
def pipeline(
    db_url: str, broker_factory: Callable[..., MosquittoServer], tmp_path: Path
) -> Iterator[Pipeline]:
    """Ingestor, scorer, API and a live simulator on a private broker and a fresh database,
    with a few hundred readings per sensor already stored and scored."""
    _require_chromium()
    from tests.integration.scorer_harness import build_models

    broker = broker_factory()
    build_models(tmp_path / "models")
    pipe = Pipeline(db_url, broker.url, tmp_path / "models", tmp_path)
    try:
        pipe.start("ingest", "ingest")
        pipe.wait_ready("ingest", pipe.ports["INGEST_METRICS_PORT"])
        pipe.start("score", "score")
        pipe.wait_ready("score", pipe.ports["SCORER_METRICS_PORT"])
        pipe.start("api", "api")
        pipe.wait_api()
        # One continuous live run (a separate backfill would restart the signals' random walks
        # and the scorer would rightly flag the seam). Fast enough to warm the scorer up soon.
        sim = ["--sensors", str(len(SENSORS)), "--rate", str(RATE), "--seed", "5", "--quiet"]
        pipe.start("simulate", "simulate", *sim)
        pipe.wait_rows(len(SENSORS) * WARM_READINGS)
        yield pipe
    finally:
        pipe.stop()
        for name in pipe.procs:
            (ARTIFACTS / "e2e-logs").mkdir(parents=True, exist_ok=True)
            (ARTIFACTS / "e2e-logs" / f"{name}.log").write_text(pipe.log(name, tail=200_000))


def _enter_key(page: Page, key: str) -> None:
    """Focus the key field and type the key, then press Enter, as an operator would."""
    page.evaluate("document.getElementById('key-input').focus()")
    page.type_text(key)
    page.press("Enter", "Enter", 13)


def _search(page: Page, text: str) -> None:
    page.evaluate(
        f"(() => {{ const s = document.getElementById('search'); s.value = {json.dumps(text)}; "
        "s.dispatchEvent(new Event('input')); })()"
    )


def _publish_spike(mqtt_url: str, spec: SensorSpec, value: float) -> list[datetime]:
    """Three readings far above the sensor's band, published like a device would.

    The scorer drops readings at or before the last one it scored, so each is stamped a little
    ahead of now (the simulator stamps its ticks with the current time, on multiples of 100 ms,
    which these avoid)."""
    target = parse_mqtt_url(mqtt_url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="e2e-injector")
    client.connect(target.host, target.port)
    client.loop_start()
    times = []
    try:
        for _ in range(3):
            t = datetime.now(UTC) + timedelta(milliseconds=30)
            # 37 ms past a 100 ms boundary that is after the last tick already stamped.
            t = t.replace(microsecond=t.microsecond // 100_000 * 100_000 + 37_000)
            reading = Reading(
                sensor_id=spec.sensor_id,
                time=t,
                value=value,
                sensor_type=spec.sensor_type,
                unit=spec.unit,
            )
            info = client.publish(readings_topic(spec.sensor_id), encode_reading(reading), qos=1)
            info.wait_for_publish(timeout=10)
            times.append(t)
            time.sleep(0.25)
    finally:
        client.loop_stop()
        client.disconnect()
    return times


def _quiet_sensor(pipeline: Pipeline, key: str) -> SensorSpec:
    """A sensor with no open incident: on one that is already alerting, a new spike would only
    update the open incident (rate-limited), not open one we can look for."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, doc = http_json(f"{pipeline.base_url}/api/v1/anomalies?state=open", key=key)
        assert status == 200, doc
        busy = {item["sensor_id"] for item in doc["items"]}
        quiet = [s for s in SENSORS if s.sensor_id not in busy]
        if quiet:
            return quiet[0]
        time.sleep(1)
    raise AssertionError("every simulated sensor has an open incident; nothing to inject into")


def _wait_forecast(pipeline: Pipeline, key: str, sensor_id: str) -> float:
    """Until the API can forecast the sensor (its state is fed from the database); returns the
    half-width of the first point's 95 % band."""
    deadline = time.monotonic() + 90
    while True:
        status, doc = http_json(
            f"{pipeline.base_url}/api/v1/predict", key=key, body={"sensor_id": sensor_id}
        )
        if status == 200:
            first = doc["points"][0]
            return float(first["upper_95"] - first["mean"])
        assert time.monotonic() < deadline, doc
        time.sleep(0.5)


def test_dashboard_shows_live_sensors_forecast_and_an_injected_anomaly(pipeline: Pipeline) -> None:
    key = pipeline.create_key("e2e-dashboard", ["reports:read", "ml:predict"])
    target = _quiet_sensor(pipeline, key)
    half_band = _wait_forecast(pipeline, key, target.sensor_id)
    row_js = f"document.querySelector('#sensor-rows tr[data-sensor=\"{target.sensor_id}\"]')"

    with Chromium(width=1440, height=900) as page:
        page.goto(f"{pipeline.base_url}/")
        page.wait_for("document.body.dataset.view === 'key'", 15, "the key form")
        # No data without a key: the overview is not even shown.
        assert page.evaluate("document.getElementById('workspace').hidden") is True

        # A wrong key gets a clear message, and the only errors are the refused requests.
        _enter_key(page, "sp_00000000_not-a-real-key")
        message = page.wait_for("document.getElementById('key-error').textContent", 15)
        assert "401" in message and "refused" in message
        assert page.evaluate("document.body.dataset.view") == "key"
        refused = page.errors()
        assert refused and all("401" in e.text for e in refused), refused
        page.logs.clear()

        _enter_key(page, key)
        page.wait_for(
            f"Number(document.getElementById('sensor-table').dataset.count) >= {len(SENSORS)}",
            20,
            "the overview",
        )
        page.wait_for(
            "document.body.dataset.stream === 'live' && Number(document.body.dataset.batches) >= 3",
            20,
            "live batches",
        )
        assert page.evaluate(f"localStorage.getItem('sensorpipe.apiKey') === {json.dumps(key)}")
        rows = page.evaluate("""[...document.querySelectorAll('#sensor-rows tr')].map(tr => ({
            id: tr.dataset.sensor, status: tr.cells[0].textContent.trim(),
            type: tr.cells[2].textContent, unit: tr.cells[3].textContent,
            value: tr.cells[4].textContent, age: tr.cells[5].textContent}))""")
        by_id = {r["id"]: r for r in rows}
        assert set(by_id) >= {s.sensor_id for s in SENSORS}, rows
        for spec in SENSORS:
            row = by_id[spec.sensor_id]
            assert row["type"] == spec.sensor_type and row["unit"] == spec.unit, row
            assert row["value"] not in ("", "—"), row
            assert row["age"].endswith("s ago"), row  # fresh: the live simulator feeds it
        # Status is spelled out, not only coloured.
        assert all(r["status"].split()[-1] in ("OK", "Alerting", "Silent") for r in rows)
        _search(page, "hum")
        assert page.evaluate("document.getElementById('sensor-table').dataset.shown") == "1"
        _search(page, "")
        page.screenshot(ARTIFACTS / "dashboard-overview.png")

        # Open the sensor from the keyboard: focus its link and press Enter.
        page.evaluate(f"{row_js}.querySelector('a').focus()")
        page.press("Enter", "Enter", 13)
        page.wait_for("document.body.dataset.view === 'sensor'", 10, "the sensor view")
        chart = page.wait_for(
            "(() => { const d = document.getElementById('chart').dataset; "
            f"return Number(d.readings) >= {WARM_READINGS} && Number(d.band) >= 12 "
            "&& Number(d.drawn) > 0 && {...d}; })()",
            30,
            "readings and the forecast band",
        )
        assert chart["bucket"] == "raw" and int(chart["forecast"]) >= 12, chart
        pixels = page.evaluate(PIXELS_JS)
        assert pixels["band"] > 300 and pixels["line"] > 300, pixels

        # Inject an anomaly on the broker; it must come back through ingest, score and stream.
        page.evaluate("window.__sameDocument = 'yes'")
        last = float(page.evaluate(f"Number({row_js}.cells[4].textContent)"))
        spike = round(last + SPIKE_HALF_BANDS * half_band, 3)
        times = _publish_spike(pipeline.mqtt_url, target, spike)
        try:
            alert = page.wait_for(
                "[...document.querySelectorAll('#alert-rows tr')].map(tr => ({...tr.dataset}))"
                f".find(d => d.state !== 'resolved' && Math.abs(Number(d.value) - {spike}) < 1e-6)",
                45,
                "an open alert for the injected anomaly",
            )
        except TimeoutError as exc:
            _, doc = http_json(
                f"{pipeline.base_url}/api/v1/anomalies?sensor_id={target.sensor_id}", key=key
            )
            raise AssertionError(
                f"{exc}; spike {spike} after {last} (half band {half_band}); the API lists {doc}"
            ) from exc
        markers = page.wait_for(
            "JSON.parse(document.getElementById('chart').dataset.markers || '[]')"
            f".filter(m => Math.abs(m[1] - {spike}) < 1e-6)",
            15,
            "the anomaly marker",
        )
        assert markers[0][0] >= times[0].timestamp() - 1 and markers[0][2] >= 0.5, markers
        assert page.evaluate("window.__sameDocument") == "yes"  # no reload happened
        assert "Alerting" in page.evaluate(f"{row_js}.cells[0].textContent")
        # The alert row carries the details: expected value, band and per-detector scores.
        details = page.evaluate(
            f"[...document.querySelector('#alert-rows tr[data-event-id=\"{alert['eventId']}\"]')"
            ".cells].map(c => c.textContent)"
        )
        assert details[4] != "—" and "–" in details[5] and ":" in details[7], details
        time.sleep(1.0)  # let the live points settle for the picture
        page.screenshot(ARTIFACTS / "dashboard-sensor.png")

        # A long range reads the 1-minute rollups instead of raw readings.
        page.evaluate(
            "(() => { const r = document.getElementById('range'); r.value = '21600'; "
            "r.dispatchEvent(new Event('change')); })()"
        )
        rollup = page.wait_for(
            "(() => { const d = document.getElementById('chart').dataset; "
            "return d.bucket === '1m' && Number(d.readings) >= 1 && {...d}; })()",
            20,
            "the rollup view",
        )
        assert int(rollup["readings"]) < int(chart["readings"]), (rollup, chart)

        # Escape closes the sensor view and gives the focus back to the sensor's link.
        page.evaluate("document.activeElement.blur()")
        page.press("Escape", "Escape", 27)
        page.wait_for("document.body.dataset.view === 'overview'", 10, "the overview again")
        assert page.evaluate(f"document.activeElement === {row_js}.querySelector('a')")

        assert page.errors() == [], page.errors()
        for name in ("ingest", "score", "api", "simulate"):
            pipeline.alive(name)

        # SIGTERM with a browser attached: the open stream is ended by the server (not left
        # for uvicorn's graceful-shutdown deadline to cancel), the API exits, and the page
        # says it is reconnecting.
        api = pipeline.procs["api"]
        api.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal once it has shut down cleanly, hence -SIGTERM too.
        assert api.wait(timeout=30) in (0, -signal.SIGTERM)
        page.wait_for("document.body.dataset.stream === 'reconnecting'", 15, "reconnecting")
        api_log = pipeline.log("api", tail=1_000_000)
        assert "Exception in ASGI application" not in api_log
        assert "timeout graceful shutdown exceeded" not in api_log
        assert "dashboard stream stopped" in api_log

    # The pipeline's own record agrees with what the page showed.
    stored = pipeline.count(
        "SELECT count(*) FROM anomaly_events WHERE sensor_id = %s AND event_id = %s",
        target.sensor_id,
        alert["eventId"],
    )
    assert stored == 1
