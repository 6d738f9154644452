"""Static proof that ``compose.yaml`` works the first time on a user's machine.

No Docker engine runs here, so everything that can be checked without one is: the file against
the Compose Specification schema and through the real ``docker compose config``; every service
command through the real ``sensorpipe`` argument parser; every environment variable against the
settings classes; every mounted file; every ``depends_on`` edge; ``.env.example`` against the
settings and the compose variables; no secret with a default.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml
from pydantic_settings import BaseSettings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
SCHEMA_FILE = REPO / "tests" / "data" / "compose-spec.json"

# The settings class each `sensorpipe` command builds (its module, found by subclass search).
COMMAND_SETTINGS_MODULE = {
    "migrate": "core.settings",
    "ingest": "ingestor.settings",
    "score": "scorer.settings",
    "api": "api.settings",
    "simulate": "simulators.settings",
}
# Settings a service fixes on its command line instead of in its environment.
SET_BY_COMMAND_LINE = {"api": {"API_HOST": "--host"}}
# Services allowed to run without a healthcheck: one-shot jobs others wait for to *complete*.
ONE_SHOT = {"migrate"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|(^|_)KEY($|_)|DEVICES")
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}
VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?:(:?[-?])([^}]*))?\}")


@cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    svc = compose()["services"]
    assert isinstance(svc, dict)
    return svc


def sensorpipe_services() -> dict[str, dict[str, Any]]:
    """Services that run the project's image (built from the Dockerfile)."""
    return {name: s for name, s in services().items() if "build" in s}


def env_of(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "use the mapping form of `environment:`"
    return env


def settings_classes(module_name: str) -> list[type[BaseSettings]]:
    module = importlib.import_module(module_name)
    found = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, BaseSettings) and obj.__module__ == module_name
    ]
    assert found, f"{module_name} defines no settings class"
    return found


def env_names(cls: type[BaseSettings]) -> set[str]:
    """The environment variables a settings class reads (prefix + field name or alias)."""
    prefix = str(cls.model_config.get("env_prefix", "") or "")
    names = set()
    for name, field in cls.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
        names.add((alias or prefix + name).upper())
    return names


def all_setting_names() -> set[str]:
    return {
        n
        for m in COMMAND_SETTINGS_MODULE.values()
        for c in settings_classes(m)
        for n in env_names(c)
    }


def compose_variables() -> dict[str, list[tuple[str, str]]]:
    """Every ${VAR...} in compose.yaml (comments excluded): name -> [(operator, argument)]."""
    found: dict[str, list[tuple[str, str]]] = {}
    for line in COMPOSE_FILE.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        for m in VARIABLE.finditer(line):
            found.setdefault(m.group(1), []).append((m.group(2) or "", m.group(3) or ""))
    return found


def command_of(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command")
    assert isinstance(cmd, list) and all(isinstance(c, str) for c in cmd), (
        "sensorpipe services use the exec (list) form of `command:`"
    )
    return cmd


# --- the file itself -----------------------------------------------------------------------------


def test_no_version_key_and_a_project_name() -> None:
    assert "version" not in compose(), "the `version:` key is obsolete in the Compose Specification"
    assert compose().get("name") == "sensorpipe"


def test_validates_against_the_compose_specification_schema() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(
        jsonschema.Draft7Validator(schema).iter_errors(compose()),
        key=lambda e: list(e.absolute_path),
    )
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
    )


def test_schema_validation_catches_a_broken_file() -> None:
    """The schema check can fail: a typo'd key and a wrong type are reported."""
    schema = json.loads(SCHEMA_FILE.read_text())
    broken = json.loads(json.dumps(compose()))
    broken["services"]["db"]["healtcheck"] = {"test": ["CMD", "true"]}
    broken["services"]["api"]["ports"] = "8000:8000"
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(broken))
    assert len(errors) >= 2


COMPOSE_VERSION = "2.40.3"  # the version tests/data/compose-spec.json comes from
PLUGIN_DIRS = (
    "~/.docker/cli-plugins",
    "/usr/local/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
)


def _is_compose_v2(path: Path) -> bool:
    if not path.is_file():
        return False
    out = subprocess.run([str(path), "version"], capture_output=True, text=True, timeout=30)
    return out.returncode == 0 and "Docker Compose version v2" in out.stdout


@cache
def _compose_binary() -> Path:
    """A real Docker Compose v2 binary: the one scripts/install-compose.sh puts into the
    virtualenv, one on PATH, or Docker's CLI plugin."""
    candidates = [Path(sys.executable).parent / "docker-compose", REPO / ".venv/bin/docker-compose"]
    if shutil.which("docker-compose"):
        candidates.append(Path(str(shutil.which("docker-compose"))))
    candidates += [Path(d).expanduser() / "docker-compose" for d in PLUGIN_DIRS]
    for path in candidates:
        if _is_compose_v2(path):
            return path
    msg = "no Docker Compose v2 binary: run scripts/install-compose.sh (or install Docker)"
    if os.environ.get("SENSORPIPE_REQUIRE_SERVICES") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


def embedded_compose_schema(binary: Path) -> dict[str, Any]:
    """The Compose Specification schema compiled into the docker-compose binary."""
    data = binary.read_bytes()
    title = data.find(b'"title": "Compose Specification"')
    assert title > 0, "no compose schema inside the docker-compose binary"
    start = data.rfind(b'{\n  "$schema"', 0, title)
    text = data[start : start + 400_000].decode("utf-8", errors="replace")
    schema, _ = json.JSONDecoder().raw_decode(text)
    assert isinstance(schema, dict)
    return schema


def test_the_installed_compose_schema_accepts_the_file_and_is_the_vendored_one() -> None:
    """compose.yaml validates against the schema inside the real Compose binary; for the pinned
    version that schema is exactly tests/data/compose-spec.json (its provenance)."""
    binary = _compose_binary()
    embedded = embedded_compose_schema(binary)
    errors = list(jsonschema.Draft7Validator(embedded).iter_errors(compose()))
    assert not errors, [e.message for e in errors]
    version = subprocess.run(
        [str(binary), "version"], capture_output=True, text=True, timeout=30
    ).stdout
    if f"v{COMPOSE_VERSION}" in version:
        assert json.loads(SCHEMA_FILE.read_text()) == embedded


SECRETS_ENV = {
    "POSTGRES_PASSWORD": "pg-" + "0" * 8,
    "MQTT_INGESTOR_PASSWORD": "ing",
    "MQTT_SCORER_PASSWORD": "sc",
    "MQTT_API_PASSWORD": "api",
    "MQTT_ALERTS_PASSWORD": "al",
    "GRAFANA_ADMIN_PASSWORD": "gf",
}


def _docker_compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # A clean environment: only PATH/HOME, no .env of the developer's (a throwaway project dir).
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    return subprocess.run(
        [
            str(_compose_binary()),
            "--project-directory",
            str(REPO),
            "-f",
            str(COMPOSE_FILE),
            "--env-file",
            os.devnull,
            *args,
        ],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_docker_compose_config_accepts_the_file_with_every_profile() -> None:
    """The real Compose v2 loader (interpolation, merge keys, profiles, depends_on checks)."""
    res = _docker_compose(
        "config", "--format", "json", env={**SECRETS_ENV, "COMPOSE_PROFILES": "demo,observability"}
    )
    assert res.returncode == 0, res.stderr
    resolved = json.loads(res.stdout)
    assert set(resolved["services"]) == set(services())
    assert (
        resolved["services"]["ingestor"]["environment"]["MQTT_URL"]
        == "mqtt://ingestor:ing@broker:1883"
    )
    # Unset pass-through settings stay unset (the built-in default applies) ...
    assert resolved["services"]["ingestor"]["environment"]["INGEST_BATCH_MAX_ROWS"] is None
    # ... and a value set in the environment / .env reaches the service.
    res = _docker_compose(
        "config", "--format", "json", env={**SECRETS_ENV, "INGEST_BATCH_MAX_ROWS": "777"}
    )
    assert res.returncode == 0, res.stderr
    assert (
        json.loads(res.stdout)["services"]["ingestor"]["environment"]["INGEST_BATCH_MAX_ROWS"]
        == "777"
    )
    # Without profiles: only the core stack.
    assert set(json.loads(res.stdout)["services"]) == {
        "broker",
        "db",
        "migrate",
        "ingestor",
        "scorer",
        "api",
    }


def test_scoring_reaches_the_scorer_and_the_api_alike() -> None:
    """One SCORING for both services that score: the scorer's alerts and the API's /predict
    must not disagree about a reading (core/settings.py ScoringSettings)."""
    scoring = '{"profile_level_tau_s": 86400, "threshold": 0.6}'
    res = _docker_compose("config", "--format", "json", env={**SECRETS_ENV, "SCORING": scoring})
    assert res.returncode == 0, res.stderr
    resolved = json.loads(res.stdout)["services"]
    assert resolved["scorer"]["environment"]["SCORING"] == scoring
    assert resolved["api"]["environment"]["SCORING"] == scoring
    assert "SCORING" not in resolved["ingestor"]["environment"]


@pytest.mark.parametrize("missing", sorted(SECRETS_ENV))
def test_docker_compose_refuses_to_start_without_each_secret(missing: str) -> None:
    env = {k: v for k, v in SECRETS_ENV.items() if k != missing}
    res = _docker_compose("config", "--quiet", env=env)
    assert res.returncode != 0
    assert missing in res.stderr


# --- commands and settings -----------------------------------------------------------------------


@cache
def parser() -> argparse.ArgumentParser:
    from sensorpipe.__main__ import build_parser

    return build_parser()


def test_the_sensorpipe_services_are_the_expected_ones() -> None:
    assert set(sensorpipe_services()) == {"migrate", "ingestor", "scorer", "api", "simulator"}


@pytest.mark.parametrize("name", ["migrate", "ingestor", "scorer", "api", "simulator"])
def test_every_service_command_is_a_real_sensorpipe_command(name: str) -> None:
    cmd = command_of(sensorpipe_services()[name])
    try:
        args = parser().parse_args(cmd)
    except SystemExit as exc:  # argparse reports unknown commands/options this way
        raise AssertionError(f"`sensorpipe {' '.join(cmd)}` does not parse") from exc
    assert args.command == cmd[0]
    assert args.command in COMMAND_SETTINGS_MODULE


def test_the_parser_check_can_fail() -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["ingest", "--no-such-option"])
    with pytest.raises(SystemExit):
        parser().parse_args(["no-such-command"])


def test_every_environment_variable_is_a_known_setting() -> None:
    known = all_setting_names()
    for name, service in sensorpipe_services().items():
        unknown = set(env_of(service)) - known
        assert not unknown, f"{name} sets variables no settings class reads: {sorted(unknown)}"


@pytest.mark.parametrize("name", ["migrate", "ingestor", "scorer", "api", "simulator"])
def test_every_setting_of_a_component_reaches_its_service(name: str) -> None:
    """A setting put in .env takes effect: the service lists it (fixed or passed through)."""
    service = sensorpipe_services()[name]
    command = command_of(service)[0]
    wanted = {n for c in settings_classes(COMMAND_SETTINGS_MODULE[command]) for n in env_names(c)}
    if command == "migrate":
        # `migrate` only needs the database; the rest of the core settings do not apply to it.
        wanted = {"DATABASE_URL", "LOG_LEVEL", "LOG_FORMAT"}
    exempt = SET_BY_COMMAND_LINE.get(name, {})
    for var, flag in exempt.items():
        assert flag in command_of(service), f"{name}: {var} is meant to be set by {flag}"
    missing = wanted - set(env_of(service)) - set(exempt)
    assert not missing, f"{name} does not pass {sorted(missing)} (add them to its environment)"


def test_every_sensorpipe_service_settings_validate() -> None:
    """The fixed values compose gives each service pass the component's own validation."""
    resolved = json.loads(
        _docker_compose(
            "config", "--format", "json", env={**SECRETS_ENV, "COMPOSE_PROFILES": "demo"}
        ).stdout
    )["services"]
    for name, service in sensorpipe_services().items():
        command = command_of(service)[0]
        env = {k: v for k, v in resolved[name]["environment"].items() if v is not None}
        classes = settings_classes(COMMAND_SETTINGS_MODULE[command])
        if command == "migrate":  # reads DatabaseSettings only: no broker settings needed
            classes = [c for c in classes if c.__name__ in ("CommonSettings", "DatabaseSettings")]
        for cls in classes:
            values = {k.lower(): v for k, v in env.items() if k in env_names(cls)}
            cls.model_validate(values)  # raises on a bad value


# --- .env.example --------------------------------------------------------------------------------


def env_example() -> dict[str, tuple[bool, str]]:
    """NAME -> (commented out, value) for every `NAME=value` / `# NAME=value` line."""
    entries: dict[str, tuple[bool, str]] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = re.match(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(\S*)", line)
        if m:
            entries.setdefault(m.group(2), (m.group(1) is not None, m.group(3)))
    return entries


def test_env_example_lists_every_setting_and_every_compose_variable() -> None:
    listed = set(env_example())
    missing_settings = all_setting_names() - listed
    assert not missing_settings, f".env.example lacks settings {sorted(missing_settings)}"
    missing_vars = set(compose_variables()) - listed
    assert not missing_vars, f".env.example lacks compose variables {sorted(missing_vars)}"


def test_env_example_defaults_are_the_real_defaults() -> None:
    """A commented `# NAME=value` documents the default: it must be the settings' default."""
    entries = env_example()
    checked = 0
    for module in COMMAND_SETTINGS_MODULE.values():
        for cls in settings_classes(module):
            prefix = str(cls.model_config.get("env_prefix", "") or "")
            for field_name, field in cls.model_fields.items():
                var = (prefix + field_name).upper()
                commented, raw = entries[var]
                if field.is_required() or not commented or var in ("DATABASE_URL", "MQTT_URL"):
                    continue
                default = field.get_default(call_default_factory=True)
                if raw == "" and default is None:
                    continue
                parsed = _parse_as(cls, field_name, raw)
                assert parsed == default, f"{var}: .env.example says {raw!r}, default {default!r}"
                checked += 1
    assert checked > 50


def _parse_as(cls: type[BaseSettings], field_name: str, raw: str) -> object:
    from pydantic import TypeAdapter

    annotation = cls.model_fields[field_name].annotation
    assert annotation is not None
    return TypeAdapter(annotation).validate_python(raw, strict=False)


def test_no_secret_has_a_default() -> None:
    for name, uses in compose_variables().items():
        if not SECRET_NAME.search(name):
            continue
        for op, arg in uses:
            assert op in (":?", "?") or (op in (":-", "-") and arg == ""), (
                f"${{{name}}} in compose.yaml must be required (:?) or empty, not defaulted"
            )
    for name, (commented, value) in env_example().items():
        if SECRET_NAME.search(name) and not commented:
            assert value == "", f".env.example must not ship a value for {name}"
    assert "DATABASE_URL" not in compose_variables()
    text = COMPOSE_FILE.read_text()
    assert not re.search(r"://[^:/\s]+:(?!\$\{)[^@\s]+@", text), "a literal password in a URL"


# --- mounts, dependencies, health ----------------------------------------------------------------


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, PurePosixPath]]:
    mounts = []
    for vol in service.get("volumes", []):
        assert isinstance(vol, str), "use the short volume syntax"
        source, target = vol.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append(((REPO / source).resolve(), PurePosixPath(target)))
    return mounts


def test_every_mounted_file_exists() -> None:
    count = 0
    for name, service in services().items():
        for host, _ in bind_mounts(service):
            assert host.exists(), f"{name} mounts {host}, which does not exist"
            assert REPO in host.parents, f"{name} mounts {host}, outside the repository"
            count += 1
    assert count >= 4


def test_container_paths_that_point_into_mounts_exist() -> None:
    """Scripts and files a service names inside a bind mount (entrypoint, healthcheck, config)."""
    checked = 0
    for name, service in services().items():
        mounts = bind_mounts(service)
        words: list[str] = []
        for key in ("entrypoint", "command"):
            value = service.get(key) or []
            words += value if isinstance(value, list) else str(value).split()
        words += [str(w) for w in (service.get("healthcheck") or {}).get("test", [])]
        words += [str(v) for v in env_of(service).values() if v is not None]
        for word in words:
            path_text = word.split("=", 1)[-1]
            if not path_text.startswith("/"):
                continue
            for host, target in mounts:
                path = PurePosixPath(path_text)
                if path == target or target in path.parents:
                    local = host / path.relative_to(target)
                    assert local.exists(), f"{name} refers to {path}, missing at {local}"
                    checked += 1
    assert checked >= 5


def test_depends_on_targets_exist_and_are_healthy_or_one_shot() -> None:
    svc = services()
    for name, service in svc.items():
        deps = service.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: use the long depends_on form with a condition"
        for target, spec in deps.items():
            assert target in svc, f"{name} depends on unknown service {target}"
            condition = spec.get("condition")
            if condition == "service_completed_successfully":
                assert target in ONE_SHOT, f"{name} waits for {target} to exit, but it is no job"
                assert svc[target].get("restart") == "no"
            else:
                assert condition == "service_healthy", f"{name} -> {target}: {condition}"
                assert "test" in (svc[target].get("healthcheck") or {}), (
                    f"{name} waits for {target} to be healthy, but it has no healthcheck"
                )
            # A service that always runs cannot wait for one that only runs in a profile.
            if not service.get("profiles"):
                assert not svc[target].get("profiles"), f"{name} depends on profiled {target}"


def test_every_long_running_service_has_a_healthcheck() -> None:
    for name, service in services().items():
        if name in ONE_SHOT:
            continue
        test = (service.get("healthcheck") or {}).get("test")
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), name


def test_sensorpipe_services_wait_for_migrations_and_their_backends() -> None:
    for name in ("ingestor", "scorer", "api"):
        deps = services()[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert {"db", "broker"} <= set(deps)
    assert services()["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"


def _healthcheck_port(service: dict[str, Any]) -> int:
    probe = " ".join(service["healthcheck"]["test"])
    m = re.search(r"http://127\.0\.0\.1:(\d+)/health", probe)
    assert m, f"healthcheck does not probe /health: {probe}"
    return int(m.group(1))


@pytest.mark.parametrize(
    ("name", "port_var", "host_var"),
    [
        ("ingestor", "INGEST_METRICS_PORT", "INGEST_METRICS_HOST"),
        ("scorer", "SCORER_METRICS_PORT", "SCORER_METRICS_HOST"),
        ("api", "API_PORT", None),
    ],
)
def test_worker_ports_agree_between_settings_healthcheck_and_prometheus(
    name: str, port_var: str, host_var: str | None
) -> None:
    service = services()[name]
    env = env_of(service)
    port = int(env[port_var])
    assert _healthcheck_port(service) == port
    if host_var is not None:
        # S104: asserting the value, not binding anything.
        assert env[host_var] == "0.0.0.0", f"{name} must listen beyond loopback"  # noqa: S104
    else:
        assert command_of(service)[-2:] == ["--host", "0.0.0.0"]  # noqa: S104
    prometheus = yaml.safe_load((REPO / "observability/prometheus/prometheus.yml").read_text())
    targets = {
        t
        for job in prometheus["scrape_configs"]
        for sc in job.get("static_configs", [])
        for t in sc["targets"]
    }
    assert f"{name}:{port}" in targets


def test_images_are_pinned() -> None:
    for name, service in services().items():
        if "build" in service:
            continue
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and re.search(r"\d+\.\d+", tag), (
            f"{name}: image {image} is not pinned to a version"
        )


def test_the_simulator_is_easy_to_turn_off() -> None:
    assert services()["simulator"].get("profiles") == ["demo"]
    assert not any("simulator" in (s.get("depends_on") or {}) for s in services().values())
    assert all(
        services()[n].get("profiles") == ["observability"] for n in ("prometheus", "grafana")
    )
