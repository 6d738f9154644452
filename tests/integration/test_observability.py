"""The repository's Prometheus and Grafana configuration against the real services.

``promtool`` checks the scrape config and the alert rules; the real ``prometheus`` binary runs
the repository's ``prometheus.yml`` with its targets pointed at real ``sensorpipe ingest``,
``score`` and ``api`` processes (on a private broker and database): every target must be up, every
rule must evaluate, every dashboard query must run, and every metric the dashboard and the rules
name must be one the workers actually expose.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TEMPLATE_DB
from tests.e2e.pipeline import Pipeline, http_json
from tests.servers import REPO, MosquittoServer, PgServer, free_port, wait_port

pytestmark = pytest.mark.integration

PROM_DIR = REPO / "observability" / "prometheus"
GRAFANA_DIR = REPO / "observability" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "sensorpipe.json"
METRIC = re.compile(r"\bsensorpipe_[a-z0-9_]+\b")
TIMEOUT_S = 60.0
# What each family type is exposed as (and so may be named in PromQL).
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "gauge": ("",),
    "info": ("_info",),
    "unknown": ("",),
}


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        msg = f"{name} is not installed (scripts/system-deps.sh installs it)"
        if os.environ.get("SENSORPIPE_REQUIRE_SERVICES") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


# --- static: promtool, dashboard and provisioning ------------------------------------------------


def test_promtool_accepts_the_scrape_config_and_the_rules() -> None:
    promtool = _binary("promtool")
    config = subprocess.run(
        [promtool, "check", "config", str(PROM_DIR / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert config.returncode == 0, config.stdout + config.stderr
    rules = subprocess.run(
        [promtool, "check", "rules", str(PROM_DIR / "rules.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS" in rules.stdout


def test_promtool_check_can_fail(tmp_path: Path) -> None:
    broken = (PROM_DIR / "rules.yml").read_text().replace("[5m]))", "[5m]", 1)
    (tmp_path / "rules.yml").write_text(broken)
    res = subprocess.run(
        [_binary("promtool"), "check", "rules", str(tmp_path / "rules.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode != 0


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        t["expr"]
        for p in panels(dashboard)
        for t in p.get("targets", [])
        if t.get("datasource", p.get("datasource", {})).get("type") == "prometheus"
    ]


def rule_queries() -> list[str]:
    rules = yaml.safe_load((PROM_DIR / "rules.yml").read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def test_dashboard_has_the_panels_operators_need() -> None:
    titles = {p["title"] for p in panels(json.loads(DASHBOARD.read_text()))}
    assert {
        "Ingest rate",
        "Ingest lag",
        "Rejected by reason",
        "Alerts",
        "Scorer latency",
        "API latency",
    } <= titles


def test_rules_cover_the_failures_of_the_runbooks() -> None:
    rules = yaml.safe_load((PROM_DIR / "rules.yml").read_text())
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert {
        "SensorpipeIngestStalled",
        "SensorpipeBacklogGrowing",
        "SensorpipeRejectedSpike",
        "SensorpipeModelNotLoaded",
    } <= names
    runbooks = (REPO / "docs" / "operations.md").read_text().lower()
    for group in rules["groups"]:
        for rule in group["rules"]:
            anchor = rule["annotations"]["runbook"].split("#")[1]
            headings = {
                re.sub(r"[^a-z0-9 -]", "", h).strip().replace(" ", "-")
                for h in re.findall(r"^#+ (.+)$", runbooks, re.MULTILINE)
            }
            assert anchor in headings, f"{rule['alert']}: no runbook section #{anchor}"


def test_grafana_provisioning_matches_the_dashboard_and_compose() -> None:
    datasources = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "datasources.yml").read_text()
    )
    uids = {d["uid"]: d["type"] for d in datasources["datasources"]}
    dashboard = json.loads(DASHBOARD.read_text())
    used = {
        (t.get("datasource") or p["datasource"])["uid"]
        for p in panels(dashboard)
        for t in p.get("targets", [])
    }
    assert used <= set(uids), f"the dashboard uses unknown datasources {used - set(uids)}"
    assert set(uids.values()) == {"prometheus", "grafana-postgresql-datasource"}
    providers = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yml").read_text()
    )
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    mounts = dict(
        v.split(":")[1::-1] for v in compose["services"]["grafana"]["volumes"] if v.startswith("./")
    )
    for provider in providers["providers"]:
        assert mounts[provider["options"]["path"]] == "./observability/grafana/dashboards"
    assert len({p["id"] for p in panels(dashboard)}) == len(list(panels(dashboard)))


# --- live: the real Prometheus scraping the real workers -----------------------------------------


@dataclass
class Stack:
    pipe: Pipeline
    prometheus_url: str
    exposed: dict[str, set[str]]  # job -> metric names that may be queried


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback only
        return json.loads(resp.read())


def _query(stack: Stack, expr: str) -> dict[str, Any]:
    q = urllib.parse.urlencode({"query": expr})
    result: dict[str, Any] = _get_json(f"{stack.prometheus_url}/api/v1/query?{q}")
    return result


def exposed_names(text: str) -> set[str]:
    """Names a scrape of this exposition makes queryable, families without samples included."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + s for s in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def prometheus_config(ports: dict[str, int], prom_port: int) -> dict[str, Any]:
    """The repository's prometheus.yml, retargeted at the test's processes, scraping every 1 s."""
    config: dict[str, Any] = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    where = {
        "ingestor:9101": f"127.0.0.1:{ports['ingestor']}",
        "scorer:9102": f"127.0.0.1:{ports['scorer']}",
        "api:8000": f"127.0.0.1:{ports['api']}",
        "localhost:9090": f"127.0.0.1:{prom_port}",
    }
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            unknown = set(static["targets"]) - set(where)
            assert not unknown, f"unexpected targets {unknown} in prometheus.yml"
            static["targets"] = [where[t] for t in static["targets"]]
    return config


def _start_workers(pipe: Pipeline) -> None:
    pipe.start("ingest", "ingest")
    pipe.wait_ready("ingest", pipe.ports["INGEST_METRICS_PORT"])
    pipe.start("score", "score")
    pipe.wait_ready("score", pipe.ports["SCORER_METRICS_PORT"])
    pipe.start("api", "api")
    pipe.wait_api()


def _traffic(pipe: Pipeline) -> None:
    """Readings (with injected anomalies) through the broker, and API requests of each kind."""
    pipe.run(
        "simulate",
        "simulate",
        "--sensors",
        "3",
        "--rate",
        "20",
        "--count",
        "60",
        "--anomaly-rate",
        "0.05",
        "--seed",
        "3",
        "--qos",
        "1",
        "--quiet",
    )
    pipe.wait_rows(150)
    key = pipe.create_key("observability-test", ["reports:read"])
    assert http_json(f"{pipe.base_url}/api/v1/sensors", key=key)[0] == 200
    assert http_json(f"{pipe.base_url}/api/v1/sensors")[0] == 401


def _start_prometheus(tmp: Path, ports: dict[str, int]) -> tuple[subprocess.Popen[bytes], str]:
    prom_port = free_port()
    (tmp / "prom").mkdir()
    (tmp / "prom" / "prometheus.yml").write_text(
        yaml.safe_dump(prometheus_config(ports, prom_port))
    )
    shutil.copy(PROM_DIR / "rules.yml", tmp / "prom" / "rules.yml")
    with (tmp / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                _binary("prometheus"),
                f"--config.file={tmp / 'prom' / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    wait_port(prom_port, timeout_s=30)
    return proc, f"http://127.0.0.1:{prom_port}"


@pytest.fixture(scope="module")
def stack(
    pg_server: PgServer, broker: MosquittoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    from tests.integration.scorer_harness import build_models

    _binary("prometheus")
    tmp = tmp_path_factory.mktemp("observability")
    db_url = pg_server.create_db(f"obs{os.getpid()}", template=TEMPLATE_DB)
    build_models(tmp / "models")
    pipe = Pipeline(db_url, broker.url, tmp / "models", tmp)
    prom: subprocess.Popen[bytes] | None = None
    try:
        _start_workers(pipe)
        _traffic(pipe)
        ports = {
            "ingestor": pipe.ports["INGEST_METRICS_PORT"],
            "scorer": pipe.ports["SCORER_METRICS_PORT"],
            "api": pipe.api_port,
        }
        prom, url = _start_prometheus(tmp, ports)
        exposed = {}
        for job, port in ports.items():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                exposed[job] = exposed_names(r.read().decode())
        yield Stack(pipe, url, exposed)
    finally:
        if prom is not None:
            prom.terminate()
            prom.wait(timeout=30)
        pipe.stop()


def _wait_for(what: str, check: Any, timeout_s: float = TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; last: {last}")


def test_prometheus_scrapes_every_worker(stack: Stack) -> None:
    def all_up() -> dict[str, str] | None:
        targets = _get_json(f"{stack.prometheus_url}/api/v1/targets")["data"]["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in targets}
        return (
            health
            if set(health) == {"ingestor", "scorer", "api", "prometheus"}
            and all(h == "up" for h in health.values())
            else None
        )

    _wait_for("every target up", all_up)
    result = _query(stack, "up")["data"]["result"]
    assert {r["metric"]["job"]: r["value"][1] for r in result} == {
        "ingestor": "1",
        "scorer": "1",
        "api": "1",
        "prometheus": "1",
    }


def test_dashboard_and_rules_name_only_metrics_the_workers_expose(stack: Stack) -> None:
    union = set().union(*stack.exposed.values())
    used = {name for expr in dashboard_queries() + rule_queries() for name in METRIC.findall(expr)}
    assert len(used) >= 15
    missing = used - union
    assert not missing, f"the dashboard/rules use metrics no worker exposes: {sorted(missing)}"
    # Each component's metrics carry its own prefix.
    for job, prefix in (
        ("ingestor", "sensorpipe_ingestor_"),
        ("scorer", "sensorpipe_scorer_"),
        ("api", "sensorpipe_api_"),
    ):
        own = {n for n in stack.exposed[job] if n.startswith("sensorpipe_")}
        assert own and all(n.startswith(prefix) for n in own), job


def test_the_metric_check_can_fail() -> None:
    text = "# HELP sensorpipe_x_total x\n# TYPE sensorpipe_x_total counter\n"
    assert exposed_names(text) == {"sensorpipe_x_total"}
    assert "sensorpipe_ingestor_rows_writen_total" not in exposed_names(text)


def test_prometheus_stored_the_metrics_the_dashboard_plots(stack: Stack) -> None:
    """The traffic shows up in Prometheus: rows written, lag, API latency, scored readings."""

    def stored() -> dict[str, float] | None:
        exprs = {
            "rows": "sum(sensorpipe_ingestor_rows_written_total)",
            "lag": "sum(sensorpipe_ingestor_lag_seconds_count)",
            "api": "sum(sensorpipe_api_request_duration_seconds_count)",
            "scored": "sum(sensorpipe_scorer_readings_scored_total)",
            "models": "sum(sensorpipe_scorer_model_loaded)",
            "db_up": "min(sensorpipe_ingestor_db_up)",
        }
        values = {}
        for name, expr in exprs.items():
            result = _query(stack, expr)["data"]["result"]
            values[name] = float(result[0]["value"][1]) if result else 0.0
        return values if all(v > 0 for v in values.values()) else None

    values = _wait_for("the traffic in Prometheus", stored)
    assert values["rows"] >= 150


def test_every_dashboard_query_runs(stack: Stack) -> None:
    for expr in dashboard_queries():
        concrete = expr.replace("$__rate_interval", "1m").replace("$__interval", "15s")
        answer = _query(stack, concrete)
        assert answer["status"] == "success", (expr, answer)


def test_every_rule_loads_and_evaluates(stack: Stack) -> None:
    def rules() -> list[dict[str, Any]]:
        groups = _get_json(f"{stack.prometheus_url}/api/v1/rules")["data"]["groups"]
        return [r for g in groups for r in g["rules"]]

    def evaluated() -> list[dict[str, Any]] | None:
        current = rules()
        ok = current and all(
            r.get("health") == "ok" and r["lastEvaluation"].startswith("2") for r in current
        )
        return current if ok else None

    assert len(_wait_for("every rule evaluated", evaluated)) == len(rule_queries())

    # A healthy stack with a loaded model raises neither of these (an evaluation before the
    # first scrape may have made them pending for a moment: they must clear).
    def quiet() -> dict[str, str] | None:
        state = {r["name"]: r["state"] for r in rules()}
        wanted = ("SensorpipeModelNotLoaded", "SensorpipeTargetDown")
        return state if all(state[n] == "inactive" for n in wanted) else None

    _wait_for("model and target alerts inactive", quiet, timeout_s=15)


def test_compose_healthchecks_pass_against_the_running_workers(stack: Stack) -> None:
    """The exact healthcheck commands of compose.yaml, with the in-container port swapped for the
    test's, succeed against the real workers (and fail against a closed port)."""
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    ports = {
        "ingestor": (9101, stack.pipe.ports["INGEST_METRICS_PORT"]),
        "scorer": (9102, stack.pipe.ports["SCORER_METRICS_PORT"]),
        "api": (8000, stack.pipe.api_port),
    }
    for name, (inside, actual) in ports.items():
        test = compose["services"][name]["healthcheck"]["test"]
        assert test[:2] == ["CMD", "python"], test
        argv = [sys.executable, *(a.replace(f":{inside}/", f":{actual}/") for a in test[2:])]
        ok = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert ok.returncode == 0, (name, ok.stderr)
        closed = [a.replace(f":{actual}/", f":{free_port()}/") for a in argv]
        assert subprocess.run(closed, capture_output=True, timeout=30).returncode != 0
