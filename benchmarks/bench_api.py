"""HTTP API latency and throughput: wrk for the floor and paced rates, locust for the mix.

Starts a private PostgreSQL and Mosquitto (``tests/servers.py``), migrates, stores normal
history for ``--sensors`` sensors, builds a model registry with the scoring library's training
code, and serves the API with uvicorn in a child process (one worker unless ``--workers``). Then:

* wrk, saturated (``-c 8``): ``/health`` (the floor: uvicorn + middleware + nothing),
  ``/detect_anomaly``, ``/predict``, ``/data/ingest`` (batches of 100 readings);
* wrk, paced: the same endpoints at the target rates (1,000 req/s detect, 200 req/s predict),
  each connection sleeping between requests (wrk's ``delay()``), so latency is measured at the
  target load, not at saturation;
* locust, headless: a mixed scenario (ingest, predict, detect, readings, reports).

Every figure comes from the same run; the table says what bounds each. ``--quick`` runs a few
seconds per figure for iteration.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.api_support import (  # noqa: E402
    add_readings,
    add_sensor,
    build_models_dir,
    create_keys,
    sine_values,
)
from tests.servers import MosquittoServer, PgServer, free_port, migrate  # noqa: E402

LUA_TEMPLATE = """
local bodies = {bodies}
local headers = {{["X-API-Key"] = "{key}", ["Content-Type"] = "application/json"}}
local i = 0
local pause_ms = {pause_ms}
request = function()
  i = i + 1
  local body = bodies[(i % #bodies) + 1]
  if body == "" then return wrk.format("GET", "{path}", headers) end
  return wrk.format("{method}", "{path}", headers, body)
end
if pause_ms > 0 then
  delay = function() return pause_ms end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {{"requests": %d, "duration_us": %d, "socket_errors": %d, "non2xx": %d, '
    .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def lua_string(s: str) -> str:
    return "[==[" + s + "]==]"


def wrk(
    url: str,
    path: str,
    method: str,
    bodies: list[str],
    key: str,
    *,
    connections: int,
    duration_s: float,
    pause_ms: float,
    workdir: Path,
) -> dict[str, float]:
    script = workdir / f"wrk_{abs(hash((path, pause_ms, connections)))}.lua"
    script.write_text(
        LUA_TEMPLATE.format(
            bodies="{" + ",".join(lua_string(b) for b in bodies) + "}",
            key=key,
            path=path,
            method=method,
            pause_ms=pause_ms,
        )
    )
    threads = min(2, connections)
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{duration_s:g}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=duration_s + 60,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    r: dict[str, float] = json.loads(line[len("RESULT ") :])
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


def start_api(env: dict[str, str], port: int, workers: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "api.server:app_from_env",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
        "--workers",
        str(workers),
    ]
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def wait_ready(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health/ready", timeout=2) as r:  # noqa: S310
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError("the API did not become ready")


def seed(db_url: str, sensors: int, history: int) -> tuple[list[str], datetime]:
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    ids = [f"bench.{i:03d}" for i in range(sensors)]
    for i, sid in enumerate(ids):
        add_sensor(db_url, sid, interval_s=10.0)
        add_readings(db_url, sid, sine_values(history, base=20.0 + i, noise_seed=i), end=end)
    return ids, end


def bodies_for(ids: list[str], t: float) -> dict[str, list[str]]:
    detect = [
        json.dumps({"sensor_id": s, "value": 20.0 + i + 0.5, "timestamp": t})
        for i, s in enumerate(ids)
    ]
    predict = [json.dumps({"sensor_id": s, "horizon": 12}) for s in ids]
    ingest = []
    for k, s in enumerate(ids[:20]):
        batch = [
            {"sensor_id": s, "value": 20.0 + j * 0.01, "timestamp": t + k * 1000 + j}
            for j in range(100)
        ]
        ingest.append(json.dumps(batch))
    return {"detect": detect, "predict": predict, "ingest": ingest, "health": [""]}


def locust(
    url: str, keys: dict[str, str], ids: list[str], users: int, duration_s: float, workdir: Path
) -> list[dict[str, str]]:
    env = {**os.environ, "BENCH_KEY": keys["all"], "BENCH_SENSORS": ",".join(ids)}
    prefix = workdir / "locust"
    subprocess.run(
        [
            str(Path(sys.executable).parent / "locust"),
            "-f",
            str(REPO / "benchmarks/locustfile.py"),
            "--headless",
            "-u",
            str(users),
            "-r",
            str(users),
            "-t",
            f"{int(duration_s)}s",
            "--host",
            url,
            "--csv",
            str(prefix),
            "--only-summary",
            "--loglevel",
            "WARNING",
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        timeout=duration_s + 120,
        check=False,
    )
    with open(f"{prefix}_stats.csv") as f:
        return list(csv.DictReader(f))


def pace(connections: int, rate: float, expected_latency_ms: float = 3.0) -> float:
    return max(1.0, connections * 1000.0 / rate - expected_latency_ms)


def fmt_ms(us: float) -> str:
    return f"{us / 1000:.2f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a few seconds per figure")
    p.add_argument("--sensors", type=int, default=50)
    p.add_argument("--history", type=int, default=500)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--duration", type=float, default=15.0, help="seconds per wrk figure")
    p.add_argument("--locust-users", type=int, default=20)
    p.add_argument("--no-locust", action="store_true", help="wrk figures only")
    args = p.parse_args()
    duration = 4.0 if args.quick else args.duration
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2

    # SIGTERM (e.g. `timeout`) must still stop the servers this script started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="bench-api-"))
    pg, broker = PgServer().start(), MosquittoServer().start()
    api: subprocess.Popen[bytes] | None = None
    try:
        db_url = pg.create_db("sensorpipe")
        migrate(db_url)
        ids, end = seed(db_url, args.sensors, args.history)
        keys = create_keys(db_url, rate_limit_per_min=100_000_000).values
        models_dir = build_models_dir(workdir / "models")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "MQTT_URL": broker.url,
            "MODELS_DIR": str(models_dir),
            "LOG_LEVEL": "WARNING",
            "API_REFRESH_INTERVAL_S": "1",
            "API_DB_POOL_MAX": "10",
        }
        api = start_api(env, port, args.workers, workdir / "api.log")
        wait_ready(url)
        t = (end + timedelta(seconds=10)).timestamp()
        bodies = bodies_for(ids, t)
        rows: list[tuple[str, str, dict[str, float]]] = []

        def run(
            name: str, path: str, method: str, kind: str, conns: int, pause_ms: float, key: str
        ) -> None:
            r = wrk(
                url,
                path,
                method,
                bodies[kind],
                keys[key],
                connections=conns,
                duration_s=duration,
                pause_ms=pause_ms,
                workdir=workdir,
            )
            rows.append((name, kind, r))
            print(
                f"  {name:<38} {r['rps']:>8.0f} req/s  p50 {fmt_ms(r['p50_us'])} ms  "
                f"p99 {fmt_ms(r['p99_us'])} ms  errors {r['socket_errors'] + r['non2xx']}",
                flush=True,
            )

        print(
            f"API benchmark: {args.sensors} sensors x {args.history} readings of history, "
            f"{args.workers} uvicorn worker(s), "
            f"{duration:g}s per figure, "
            f"{os.cpu_count()} CPUs (shared)"
        )
        run("GET /health (saturated, c=8)", "/health", "GET", "health", 8, 0, "all")
        run(
            "detect_anomaly (saturated, c=8)",
            "/api/v1/detect_anomaly",
            "POST",
            "detect",
            8,
            0,
            "all",
        )
        run("predict (saturated, c=8)", "/api/v1/predict", "POST", "predict", 8, 0, "all")
        run("ingest x100 (saturated, c=8)", "/api/v1/data/ingest", "POST", "ingest", 8, 0, "all")
        # Paced: each connection waits between requests, so c connections with a pause of
        # (c / rate - expected latency) offer about `rate` requests/s. wrk has no open-loop
        # mode (wrk2 is not packaged), so the achieved rate is printed beside each figure.
        run(
            "detect_anomaly (paced, target 1000/s)",
            "/api/v1/detect_anomaly",
            "POST",
            "detect",
            20,
            pace(20, 1000),
            "all",
        )
        run(
            "predict (paced, target 200/s)",
            "/api/v1/predict",
            "POST",
            "predict",
            4,
            pace(4, 200),
            "all",
        )
        run(
            "GET /health (paced, target 1000/s)",
            "/health",
            "GET",
            "health",
            20,
            pace(20, 1000),
            "all",
        )
        # One connection, no pause: the service time of one request with nothing queued.
        run("GET /health (c=1)", "/health", "GET", "health", 1, 0, "all")
        run("detect_anomaly (c=1)", "/api/v1/detect_anomaly", "POST", "detect", 1, 0, "all")
        run("predict (c=1)", "/api/v1/predict", "POST", "predict", 1, 0, "all")

        if args.no_locust:
            return 0
        stats = locust(url, keys, ids, args.locust_users, 8 if args.quick else 30, workdir)
        print(f"\nlocust mixed scenario ({args.locust_users} users, {8 if args.quick else 30}s):")
        print(
            f"  {'name':<40} {'reqs':>7} {'fails':>6} {'req/s':>8} {'p50':>6} {'p95':>6} "
            f"{'p99':>6} ms"
        )
        for s in stats:
            print(
                f"  {s['Type'] + ' ' + s['Name']:<40} {s['Request Count']:>7} "
                f"{s['Failure Count']:>6} {float(s['Requests/s']):>8.1f} {s['50%']:>6} "
                f"{s['95%']:>6} {s['99%']:>6}"
            )
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:  # noqa: S310
            metrics = resp.read().decode()
        batch = {
            ln.split()[0]: float(ln.split()[1])
            for ln in metrics.splitlines()
            if ln.startswith("sensorpipe_api_detect_batch_requests_")
            and ln.split()[0].endswith(("_sum", "_count"))
        }
        if batch.get("sensorpipe_api_detect_batch_requests_count"):
            mean = (
                batch["sensorpipe_api_detect_batch_requests_sum"]
                / batch["sensorpipe_api_detect_batch_requests_count"]
            )
            print(f"detect micro-batching (one worker's view): {mean:.2f} requests per scorer call")
        ingest = next(r for n, k, r in rows if k == "ingest")
        print(f"\ningest throughput (saturated): {ingest['rps'] * 100:,.0f} readings/s")
        (workdir / "results.json").write_text(
            json.dumps({"wrk": [{"name": n, **r} for n, _, r in rows], "locust": stats}, indent=2)
        )
        print(f"raw results: {workdir / 'results.json'}")
        return 0
    finally:
        if api is not None:
            api.terminate()
            try:
                api.wait(timeout=20)
            except subprocess.TimeoutExpired:
                api.kill()
        broker.destroy()
        pg.destroy()


if __name__ == "__main__":
    sys.exit(main())
