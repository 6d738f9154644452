# The two commands of the README: `make run` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
export DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/sensorpipe
export MQTT_URL ?= mqtt://127.0.0.1:1883
PYTEST_ARGS ?=

.PHONY: run test setup system-deps services db lint typecheck pytest bench clean docs-db

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/.installed system-deps

system-deps:
	bash scripts/system-deps.sh

services:
	bash scripts/services.sh

db: setup services
	bash scripts/create-db.sh
	$(BIN)/sensorpipe migrate

## Whole pipeline locally: ingestor, scorer, API + dashboard and simulated sensors.
run: db
	$(BIN)/sensorpipe up

## Lint, type-check and the whole test suite (slow soak/benchmark runs excluded).
test: setup services lint typecheck pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/.installed
	$(BIN)/mypy

pytest: $(BIN)/.installed
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

bench: setup services
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

## Regenerate docs/db (schema.sql, ERD) from a freshly migrated private database.
docs-db: $(BIN)/.installed
	bash scripts/export_schema.sh
	bash scripts/generate_erd.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
