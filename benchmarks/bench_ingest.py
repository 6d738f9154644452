"""Ingest benchmark: the ingestor against the raw limits of the same machine, in one run.

Figures (each on fresh private PostgreSQL databases / Mosquitto brokers from tests/servers.py):

* raw paho QoS 1 receive rate (msg/s), draining a broker backlog, nothing else done per message;
* raw binary COPY into sensor_readings, and the idempotent path (COPY into a staging table +
  INSERT ... ON CONFLICT DO NOTHING), rows/s, transactions of 5,000 rows;
* a naive ingestor (paho + json.loads + one autocommitted INSERT per message);
* the ingestor (``python -m ingestor``), publish → committed rows, for 1-reading messages and
  100-reading arrays, draining a backlog (the 10x burst case: the broker pushes as fast as
  Receive Maximum allows), with its peak RSS;
* p50/p99 publish → committed at 2,000 readings/s, live, with the ingestor's peak RSS.

Usage::

    python benchmarks/bench_ingest.py                    # ~20 s per figure
    python benchmarks/bench_ingest.py --quick            # ~3 s per figure, for iteration
    python benchmarks/bench_ingest.py --figures latency  # one group of figures
    python benchmarks/bench_ingest.py --soak 600         # + the 10-minute soak of issue #5

The soak streams live (``mosquitto_pub -l`` fed at a fixed rate) at 0.85 x the raw paho rate
measured in the same run and checks that every reading is stored.

Targets (issue #5): 1-reading ≥ 0.85 × raw paho; arrays ≥ 0.8 × idempotent COPY;
p99 ≤ 250 ms at 2,000 readings/s; RSS ≤ 200 MB during the burst.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from benchmarks._ingest_tools import (
    IngestorProcess,
    Servers,
    broker,
    copy_rate,
    drain_with_paho,
    latency_run,
    make_session,
    naive_ingestor,
    paced_feed,
    percentile,
    preload,
    register_sensors,
    servers,
)

# Rough rates used only to size each backlog so a figure lasts about --duration seconds.
EST_PAHO = 11_000
EST_NAIVE = 2_000
EST_COPY = 60_000
MAX_BACKLOG = 400_000  # messages queued in the broker at once for a throughput figure


def measure(duration: float, figures: set[str], soak_s: float) -> dict[str, float]:
    r: dict[str, float] = {"load_before": os.getloadavg()[0]}
    with servers() as sv:
        if "limits" in figures:
            _limits(sv, duration, r)
        if "naive" in figures:
            _naive(sv, duration, r)
        if "ingest" in figures:
            r["ing_single_rows_s"], rss1 = _ingest(sv.fresh_db(), _n_paho(duration), 1, duration)
            _log(f"ingestor 1-reading: {r['ing_single_rows_s']:,.0f} rows/s")
            n_arr = int(EST_COPY * duration) // 100
            r["ing_array_rows_s"], rss2 = _ingest(sv.fresh_db(), n_arr, 100, duration)
            _log(f"ingestor arrays: {r['ing_array_rows_s']:,.0f} rows/s")
            r["burst_rss_mb"] = max(rss1, rss2) / 2**20
        if "latency" in figures:
            _latency(sv, duration, r)
        if soak_s:
            _soak(sv, soak_s, r)
    r["load_after"] = os.getloadavg()[0]
    return r


def _log(text: str) -> None:
    print(f"{text}  (load {os.getloadavg()[0]:.1f})", file=sys.stderr)


def _n_paho(duration: float) -> int:
    return int(min(MAX_BACKLOG, EST_PAHO * duration))


def _limits(sv: Servers, duration: float, r: dict[str, float]) -> None:
    for key, batched in (("raw_paho_msg_s", False), ("raw_paho_batched_msg_s", True)):
        with broker() as b:
            make_session(b, "bench-raw")
            sent = preload(b, "raw", 20, _n_paho(duration))
            r[key] = drain_with_paho(b, "bench-raw", sent, duration * 4 + 60, batched_ack=batched)
    _log(
        f"raw paho receive: {r['raw_paho_msg_s']:,.0f} msg/s auto-ack, "
        f"{r['raw_paho_batched_msg_s']:,.0f} msg/s batched manual ack"
    )
    n_copy = int(min(2_000_000, EST_COPY * duration))
    r["copy_rows_s"] = copy_rate(sv.fresh_db(), n_copy)
    r["idem_copy_rows_s"] = copy_rate(sv.fresh_db(), n_copy, idempotent=True)
    _log(f"COPY {r['copy_rows_s']:,.0f} rows/s, idempotent {r['idem_copy_rows_s']:,.0f}")


def _naive(sv: Servers, duration: float, r: dict[str, float]) -> None:
    dsn = sv.fresh_db()
    register_sensors(dsn, "nv", 20)
    with broker() as b:
        make_session(b, "bench-naive")
        sent = preload(b, "nv", 20, int(EST_NAIVE * duration))
        work, conn = naive_ingestor(dsn)
        with conn:
            r["naive_rows_s"] = drain_with_paho(b, "bench-naive", sent, duration * 6 + 60, work)
    _log(f"naive ingestor: {r['naive_rows_s']:,.0f} rows/s")


def _latency(sv: Servers, duration: float, r: dict[str, float]) -> None:
    dsn = sv.fresh_db()
    with broker() as b:
        make_session(b, "bench-lat")  # subscribed before the first publish
        with IngestorProcess(dsn, b, "bench-lat") as ing:
            ing.wait_ready(30)
            lat, expected = latency_run(dsn, b, 2000, min(duration, 60))
            r["lat_rss_mb"] = ing.max_rss / 2**20
    r["lat_p50_ms"] = percentile(lat, 0.50) * 1000
    r["lat_p99_ms"] = percentile(lat, 0.99) * 1000
    r["lat_seen"] = len(lat)
    r["lat_expected"] = expected
    _log(f"latency p50 {r['lat_p50_ms']:.0f} ms, p99 {r['lat_p99_ms']:.0f} ms")


def _soak(sv: Servers, soak_s: float, r: dict[str, float]) -> None:
    """Live stream at 0.85 x the raw paho rate of this run for ``soak_s``: the ingestor must
    keep up (rows committed at the offered rate) and lose nothing."""
    rate = 0.85 * r.get("raw_paho_msg_s", EST_PAHO)
    dsn = sv.fresh_db()
    with broker() as b:
        make_session(b, "bench-soak")
        with IngestorProcess(dsn, b, "bench-soak") as ing:
            ing.wait_ready(30)
            started = time.perf_counter()
            sent = paced_feed(b, "soak", 20, rate, soak_s)
            ing.rows_rate(sent, 600)
            elapsed = time.perf_counter() - started
            r["soak_rss_mb"] = ing.max_rss / 2**20
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM sensor_readings").fetchone()
    r["soak_s"] = soak_s
    r["soak_offered_msg_s"] = rate
    r["soak_rows_s"] = sent / elapsed
    r["soak_lost"] = sent - (row[0] if row else 0)
    _log(
        f"soak {soak_s:.0f} s at {rate:,.0f} msg/s: {r['soak_rows_s']:,.0f} rows/s, "
        f"lost {r['soak_lost']:.0f}"
    )


def _ingest(dsn: str, messages: int, per_message: int, duration: float) -> tuple[float, int]:
    with broker() as b:
        make_session(b, "bench-ing")
        rows = preload(b, "ing", 20, messages, per_message)
        with IngestorProcess(dsn, b, "bench-ing") as ing:
            rate = ing.rows_rate(rows, duration * 6 + 60)
            return rate, ing.max_rss


def _row(
    r: dict[str, float],
    name: str,
    value: str,
    target: str,
    ratio: float | None,
    naive_key: str | None,
) -> str:
    ratio_s = "–" if ratio is None else f"{ratio:.2f}"
    naive = r.get("naive_rows_s")
    vs = f"{r[naive_key] / naive:.1f}x" if naive and naive_key else "–"
    return f"| {name} | {value} | {target} | {ratio_s} | {vs} |"


def table(r: dict[str, float], duration: float) -> str:
    """The results table; rows for figures not measured in this run are left out."""
    g = r.get
    out = [
        f"# bench_ingest: {duration:g} s per figure; load average {r['load_before']:.1f} "
        f"before, {r['load_after']:.1f} after (2 cores)",
        "| figure | value | limit / target | ratio to limit | vs naive |",
        "|---|---:|---|---:|---:|",
    ]
    if "raw_paho_msg_s" in r:
        out += [
            _row(
                r,
                "raw paho QoS 1 receive (auto-ack)",
                f"{r['raw_paho_msg_s']:,.0f} msg/s",
                "limit",
                1.0,
                "raw_paho_msg_s",
            ),
            _row(
                r,
                "raw paho QoS 1 receive, acks batched every 50 ms",
                f"{r['raw_paho_batched_msg_s']:,.0f} msg/s",
                "limit (our ack pattern)",
                1.0,
                "raw_paho_batched_msg_s",
            ),
            _row(
                r, "raw binary COPY", f"{r['copy_rows_s']:,.0f} rows/s", "limit", 1.0, "copy_rows_s"
            ),
            _row(
                r,
                "COPY → staging + ON CONFLICT",
                f"{r['idem_copy_rows_s']:,.0f} rows/s",
                "limit",
                1.0,
                "idem_copy_rows_s",
            ),
        ]
    if "naive_rows_s" in r:
        out.append(
            _row(
                r,
                "naive ingestor (INSERT per message)",
                f"{r['naive_rows_s']:,.0f} rows/s",
                "baseline",
                None,
                "naive_rows_s",
            )
        )
    if "ing_single_rows_s" in r:
        paho, batched = g("raw_paho_msg_s"), g("raw_paho_batched_msg_s")
        idem = g("idem_copy_rows_s")
        out += [
            _row(
                r,
                "**ingestor, 1 reading/msg**",
                f"{r['ing_single_rows_s']:,.0f} rows/s",
                "≥ 0.85 × raw paho",
                r["ing_single_rows_s"] / paho if paho else None,
                "ing_single_rows_s",
            ),
            _row(
                r,
                "ingestor, 1 reading/msg, vs batched-ack paho",
                f"{r['ing_single_rows_s']:,.0f} rows/s",
                "(stricter limit)",
                r["ing_single_rows_s"] / batched if batched else None,
                None,
            ),
            _row(
                r,
                "**ingestor, 100 readings/msg**",
                f"{r['ing_array_rows_s']:,.0f} rows/s",
                "≥ 0.8 × idempotent COPY",
                r["ing_array_rows_s"] / idem if idem else None,
                "ing_array_rows_s",
            ),
            _row(
                r,
                "**ingestor peak RSS, backlog burst**",
                f"{r['burst_rss_mb']:.0f} MB",
                "≤ 200 MB",
                r["burst_rss_mb"] / 200,
                None,
            ),
        ]
    if "lat_p99_ms" in r:
        out += [
            _row(
                r,
                "**p50 / p99 publish → committed @ 2,000/s**",
                f"{r['lat_p50_ms']:.0f} / {r['lat_p99_ms']:.0f} ms",
                "p99 ≤ 250 ms",
                r["lat_p99_ms"] / 250,
                None,
            ),
            _row(
                r,
                "rows seen in the latency run",
                f"{r['lat_seen']:.0f} of {r['lat_expected']:.0f}",
                "all",
                r["lat_seen"] / r["lat_expected"],
                None,
            ),
            _row(r, "ingestor peak RSS @ 2,000/s", f"{r['lat_rss_mb']:.0f} MB", "–", None, None),
        ]
    if "soak_s" in r:
        out.append(
            _row(
                r,
                f"soak {r['soak_s']:.0f} s at 0.85 × raw paho ({r['soak_offered_msg_s']:,.0f}/s)",
                f"{r['soak_rows_s']:,.0f} rows/s, {r['soak_lost']:.0f} lost, "
                f"{r['soak_rss_mb']:.0f} MB",
                "keeps up, 0 lost",
                r["soak_rows_s"] / r["soak_offered_msg_s"],
                None,
            )
        )
    return "\n".join(out)


FIGURES = ("limits", "naive", "ingest", "latency")


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--duration", type=float, default=20.0, help="seconds per figure")
    p.add_argument("--quick", action="store_true", help="3 s per figure, for iteration")
    p.add_argument(
        "--figures",
        default=",".join(FIGURES),
        help=f"comma-separated subset of {','.join(FIGURES)}",
    )
    p.add_argument(
        "--soak",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="also stream live at 0.85 x the raw paho rate for this long "
        "(600 = the issue's 10-minute soak; needs 'limits' for the rate)",
    )
    p.add_argument("--json", type=Path, help="also write the raw figures here")
    args = p.parse_args()
    duration = 3.0 if args.quick else args.duration
    figures = {f.strip() for f in args.figures.split(",") if f.strip()}
    unknown = figures - set(FIGURES)
    if unknown:
        p.error(f"unknown figures: {', '.join(sorted(unknown))}")
    r = measure(duration, figures, args.soak)
    print(table(r, duration))
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
