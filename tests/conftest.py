"""Fixtures that start private PostgreSQL and Mosquitto instances.

With ``SENSORPIPE_REQUIRE_SERVICES=1`` (set by ``.ci/run``) a missing server binary fails the test
instead of skipping it, so CI can never go green by skipping the integration suite.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator

import pytest

from tests.servers import MosquittoServer, PgServer, ServiceUnavailable, migrate

REQUIRE = os.environ.get("SENSORPIPE_REQUIRE_SERVICES") == "1"
TEMPLATE_DB = "sensorpipe_template"
_db_names = itertools.count()


def _unavailable(exc: Exception) -> None:
    if REQUIRE:
        pytest.fail(f"required service unavailable: {exc}")
    pytest.skip(f"service unavailable: {exc}")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One private PostgreSQL for the session, holding a migrated template database."""
    try:
        server = PgServer().start()
    except ServiceUnavailable as exc:
        _unavailable(exc)
        raise
    try:
        migrate(server.create_db(TEMPLATE_DB))
        yield server
    finally:
        server.destroy()


@pytest.fixture
def db_url(pg_server: PgServer) -> str:
    """A fresh, migrated database for one test (cloned from the template: milliseconds)."""
    return pg_server.create_db(f"t{os.getpid()}_{next(_db_names)}", template=TEMPLATE_DB)


@pytest.fixture
def pg_factory() -> Iterator[Callable[[], PgServer]]:
    """Private PostgreSQL servers a test may stop and restart (migrated db `sensorpipe`)."""
    made: list[PgServer] = []

    def make() -> PgServer:
        try:
            server = PgServer().start()
        except ServiceUnavailable as exc:
            _unavailable(exc)
            raise
        made.append(server)
        migrate(server.create_db("sensorpipe"))
        return server

    yield make
    for s in made:
        s.destroy()


@pytest.fixture(scope="session")
def broker() -> Iterator[MosquittoServer]:
    """One private Mosquitto for the session (tests use their own topics/sensor ids)."""
    try:
        server = MosquittoServer().start()
    except ServiceUnavailable as exc:
        _unavailable(exc)
        raise
    yield server
    server.destroy()


@pytest.fixture
def broker_factory() -> Iterator[Callable[..., MosquittoServer]]:
    """Private brokers a test may stop, kill and restart."""
    made: list[MosquittoServer] = []

    def make(config: str | None = None) -> MosquittoServer:
        try:
            server = MosquittoServer(config=config).start()
        except ServiceUnavailable as exc:
            _unavailable(exc)
            raise
        made.append(server)
        return server

    yield make
    for s in made:
        s.destroy()
