"""Fixtures shared by the integration tests.

The API's fixtures (``api_client``, ``api_keys``, ``api_settings``, ``api_models_dir``) live in
``api_support.py`` with the helpers the API tests use. The scorer's (``models_dir``, ``mqtt``,
``scorer_factory``) are below; its helpers are in ``scorer_harness.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.api_support import (  # noqa: F401 - re-exported as fixtures
    api_client,
    api_keys,
    api_models_dir,
    api_session_models_dir,
    api_settings,
)
from tests.integration.scorer_harness import ALERT_ENV, ScorerProcess, build_models
from tests.servers import MosquittoServer


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Active detector and forecaster in the registry layout (a module overrides it at will)."""
    path = tmp_path_factory.mktemp("models")
    build_models(path)
    return path


@pytest.fixture
def mqtt(broker_factory: Callable[..., MosquittoServer]) -> MosquittoServer:
    return broker_factory()


@pytest.fixture
def scorer_factory(
    db_url: str, mqtt: MosquittoServer, models_dir: Path, tmp_path: Path
) -> Iterator[Callable[..., ScorerProcess]]:
    """Starts ``python -m scorer`` processes (``ALERT_ENV`` plus the given variables) and stops
    them after the test."""
    made: list[ScorerProcess] = []

    def make(**env: str) -> ScorerProcess:
        proc = ScorerProcess(
            db_url=db_url,
            mqtt_url=mqtt.url,
            models_dir=models_dir,
            log_path=tmp_path / "scorer.log",
            **{**ALERT_ENV, **env},
        )
        made.append(proc)
        return proc.start()

    yield make
    for p in made:
        p.stop()
