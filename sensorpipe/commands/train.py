"""``sensorpipe train``: fit the anomaly detector and the forecaster, store them as new versions.

Examples::

    sensorpipe train --from datasets/synthetic/train.csv --seed 7 --activate
    sensorpipe train --from-db --since 2026-01-01T00:00:00Z --until 2026-02-01T00:00:00Z

Training is the same code the notebooks call (``core.scoring.training``): the Isolation Forest is
fitted on the scorer's engineered features, and the forecaster's order is chosen by AIC on the
training data. With ``--eval FILE`` the new versions are also scored on held-out data through the
streaming ``Scorer`` and the figures go into their ``meta.json``. Same data + same seed ⇒ the same
artifact bytes (and sha256). Nothing becomes active without ``--activate``.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sensorpipe.datasets import SensorSeries

HELP = "train the anomaly detector and forecaster from datasets/ or the database"

DETECTOR = "anomaly_detector"
FORECASTER = "forecaster"
# Upper bound on readings pulled from the database, so a wide window cannot exhaust memory.
MAX_DB_READINGS = 5_000_000


def _aware(text: str) -> datetime:
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset, e.g. 2026-01-01T00:00:00Z")
    return t


def configure(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--from",
        dest="source",
        type=Path,
        metavar="CSV",
        help="dataset CSV (e.g. datasets/synthetic/train.csv)",
    )
    src.add_argument(
        "--from-db",
        action="store_true",
        help="read sensor_readings from $DATABASE_URL between --since and --until",
    )
    p.add_argument("--since", type=_aware, help="window start (inclusive, RFC 3339)")
    p.add_argument("--until", type=_aware, help="window end (exclusive, RFC 3339)")
    p.add_argument("--database-url", default=None, help="default: $DATABASE_URL")
    p.add_argument("--sensors", help="comma-separated sensor ids to train on (default: all)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    p.add_argument(
        "--models-dir",
        type=Path,
        default=Path(os.environ.get("MODELS_DIR", "models")),
        help="registry directory (default: $MODELS_DIR or ./models)",
    )
    p.add_argument(
        "--only",
        choices=[DETECTOR, FORECASTER],
        help="train one model instead of both",
    )
    p.add_argument(
        "--eval",
        type=Path,
        metavar="CSV",
        help="held-out dataset to score the new versions on (its *_labels.csv beside it)",
    )
    p.add_argument("--activate", action="store_true", help="make the new versions active")
    p.add_argument("--quiet", action="store_true", help="no progress output")


class _Progress:
    """One line per step with its duration: training takes seconds to minutes."""

    def __init__(self, steps: int, *, quiet: bool) -> None:
        self.steps = steps
        self.quiet = quiet
        self.n = 0
        self.t0 = time.perf_counter()

    def start(self, what: str) -> None:
        self.n += 1
        self.t0 = time.perf_counter()
        if not self.quiet:
            print(f"[{self.n}/{self.steps}] {what} …", flush=True)

    def done(self, what: str) -> None:
        if not self.quiet:
            print(f"      {what} ({time.perf_counter() - self.t0:.1f} s)", flush=True)


def run(args: argparse.Namespace) -> int:
    from core import registry
    from core.errors import ConfigError, InsufficientDataError

    # The forecaster first: the detector's features (residual_z, band) depend on it, so the
    # detector is fitted on features computed with the forecaster it will run beside.
    names = [args.only] if args.only else [FORECASTER, DETECTOR]
    steps = 1 + len(names) + (1 if args.eval else 0) + (1 if args.activate else 0)
    progress = _Progress(steps, quiet=args.quiet)

    progress.start("loading training data")
    series = _load(args)
    total = sum(len(s.points) for s in series)
    if total == 0:
        raise InsufficientDataError("no readings to train on", needed=1, available=0)
    progress.done(f"{total} readings of {len(series)} sensors")

    trained: dict[str, tuple[Any, dict[str, Any]]] = {}
    for name in names:
        progress.start(f"fitting {name}")
        spec = trained[FORECASTER][0] if FORECASTER in trained else None
        if name == DETECTOR and spec is None:
            spec = _active_forecaster(args.models_dir)
        trained[name] = _fit(name, series, args.seed, spec)
        progress.done(_summary(trained[name][1]))

    if args.eval:
        progress.start(f"scoring held-out {args.eval}")
        metrics = _evaluate(args.eval, trained, args.models_dir)
        for name, m in metrics.items():
            trained[name][1]["metrics"].update(m)
        progress.done(
            ", ".join(
                f"{k}={v:.3f}"
                for m in metrics.values()
                for k, v in m.items()
                if isinstance(v, float)
            )[:200]
        )

    versions = {}
    for name, (model, meta) in trained.items():
        meta["data_window"] = _window(series, args)
        versions[name] = registry.save_version(args.models_dir, name, model, meta)
        tag = f"{name}_v{versions[name]}"
        digest = registry.read_meta(args.models_dir, name, versions[name])["sha256"]
        print(f"saved {args.models_dir / tag}.joblib  sha256 {digest[:16]}…")

    if args.activate:
        progress.start("activating")
        for name, version in versions.items():
            registry.activate(args.models_dir, name, version)
        progress.done(", ".join(f"{n} v{v}" for n, v in versions.items()))
    elif not args.quiet:
        print("not activated: `sensorpipe models activate NAME VERSION` (or shadow it first)")
    if not versions:
        raise ConfigError("nothing was trained")
    return 0


def _load(args: argparse.Namespace) -> list[SensorSeries]:
    from core.errors import ConfigError
    from sensorpipe.datasets import load_readings

    wanted = [s.strip() for s in args.sensors.split(",")] if args.sensors else None
    if args.from_db:
        if args.since is None or args.until is None:
            raise ConfigError("--from-db needs --since and --until")
        if args.since >= args.until:
            raise ConfigError("--since must be before --until")
        dsn = args.database_url or os.environ.get("DATABASE_URL")
        if not dsn:
            raise ConfigError("--from-db needs --database-url or DATABASE_URL")
        return _load_db(dsn, args.since, args.until, wanted)
    if not args.source.exists():
        raise ConfigError(f"{args.source} does not exist")
    by_sensor = load_readings(args.source, wanted)
    if args.since or args.until:
        for s in by_sensor.values():
            s.points = [
                (t, v)
                for t, v in s.points
                if (args.since is None or t >= args.since)
                and (args.until is None or t < args.until)
            ]
    return [s for _, s in sorted(by_sensor.items()) if s.points]


SELECT_READINGS = """
SELECT r.sensor_id, s.sensor_type, s.unit, r.time, r.value
FROM sensor_readings r JOIN sensors s USING (sensor_id)
WHERE r.time >= %(since)s AND r.time < %(until)s
  AND (%(sensors)s::text[] IS NULL OR r.sensor_id = ANY(%(sensors)s::text[]))
ORDER BY r.sensor_id, r.time
LIMIT %(limit)s
"""


def _load_db(
    dsn: str, since: datetime, until: datetime, sensors: list[str] | None
) -> list[SensorSeries]:
    import psycopg

    from core.db import connect
    from core.errors import ConfigError, StorageError
    from sensorpipe.datasets import SensorSeries

    out: dict[str, SensorSeries] = {}
    params = {"since": since, "until": until, "sensors": sensors, "limit": MAX_DB_READINGS + 1}
    try:
        with connect(dsn) as conn, conn.cursor() as cur:
            cur.execute(SELECT_READINGS, params)
            rows = cur.fetchall()
    except psycopg.Error as exc:
        raise StorageError(f"cannot read training data: {exc}") from exc
    if len(rows) > MAX_DB_READINGS:
        raise ConfigError(
            f"the window holds more than {MAX_DB_READINGS} readings: narrow --since/--until "
            "or pick --sensors"
        )
    for sensor_id, sensor_type, unit, t, value in rows:
        s = out.get(sensor_id)
        if s is None:
            s = out[sensor_id] = SensorSeries(sensor_id, sensor_type, unit)
        s.points.append((t, float(value)))
    return list(out.values())


def _active_forecaster(models_dir: Path) -> Any:
    """The forecaster a detector trained alone (``--only anomaly_detector``) will run beside:
    the active one, else the default order a Scorer without a forecaster artifact uses."""
    from core import registry
    from core.errors import ModelError
    from core.scoring.forecaster import ForecasterSpec, as_spec

    try:
        return as_spec(registry.load_active(models_dir, FORECASTER).model)
    except ModelError as exc:
        # Only a missing one falls back: a corrupt forecaster must not silently change the
        # features the detector is trained on.
        if exc.reason != "missing":
            raise
        return ForecasterSpec()


def _fit(
    name: str, series: list[SensorSeries], seed: int, spec: Any = None
) -> tuple[Any, dict[str, Any]]:
    """Fit one model; returns it with its meta (features, parameters, metrics).

    ``spec``: for the detector, the forecaster whose residuals its features are computed with.
    """
    from core.scoring import FEATURE_NAMES, training
    from core.scoring.config import ScoringConfig

    config = ScoringConfig(seed=seed)
    data = [s.points for s in series]
    if name == DETECTOR:
        model, info = training.fit_detector(data, config, seed, spec)
        features: list[str] | None = list(FEATURE_NAMES)
    else:
        model, info = training.select_forecaster(data, config)
        features = None
    info = dict(info)
    # The trainer's own record (order, AIC table, calibration, ...) goes into meta.json as is;
    # the registry adds library versions and the checksum itself.
    info.pop("library_versions", None)
    info.pop("features", None)
    parameters = info.pop("params", None) or info.get("order") or {}
    meta = {
        **info,
        "features": features,
        "parameters": {**dict(parameters), "seed": seed},
        "metrics": _training_metrics(info),
        "sensors": [s.sensor_id for s in series],
    }
    return model, meta


def _training_metrics(info: dict[str, Any]) -> dict[str, Any]:
    """In-sample figures the trainer reports (held-out ones are added by ``--eval``)."""
    out: dict[str, Any] = {}
    if "n_rows" in info:
        out["train_feature_rows"] = info["n_rows"]
    aic = info.get("aic")
    order = info.get("order")
    if isinstance(aic, dict) and isinstance(order, dict):
        key = f"p{order.get('p')}_d{order.get('d')}_k{order.get('fourier_k')}"
        if aic.get(key) is not None:
            out["train_aic"] = aic[key]
    return out


def _summary(meta: dict[str, Any]) -> str:
    params = meta["parameters"]
    shown = {k: v for k, v in params.items() if isinstance(v, int | float | str)}
    return ", ".join(f"{k}={v}" for k, v in list(shown.items())[:6])


def _window(series: list[SensorSeries], args: argparse.Namespace) -> dict[str, Any]:
    from sensorpipe.datasets import window

    out: dict[str, Any] = dict(window(series))
    out["source"] = "database" if args.from_db else str(args.source)
    if args.sensors:
        out["sensor_filter"] = args.sensors
    return out


def _evaluate(
    path: Path, trained: dict[str, tuple[Any, dict[str, Any]]], models_dir: Path
) -> dict[str, dict[str, Any]]:
    """Held-out figures of the freshly fitted models, scored by the streaming Scorer."""
    from sensorpipe.evaluation import evaluate_models

    return evaluate_models(path, {n: m for n, (m, _) in trained.items()}, models_dir)
