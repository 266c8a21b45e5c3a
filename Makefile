# MarketFlow developer commands. Everything runs inside .venv, which these targets create.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export MARKETFLOW_HOME ?= $(CURDIR)/.marketflow
export DAGSTER_HOME ?= $(MARKETFLOW_HOME)/dagster
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export DAGSTER_DISABLE_TELEMETRY := true
# Single-run backfills: one "planned" event per asset instead of one per session (a 10-year
# backfill otherwise writes 2,520 per asset before it starts). Dagster's trade-off: partitions of
# a failed run show as missing rather than failed. See README, Performance.
export DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS ?= 1

.PHONY: help install install-dev demo dev test lint format bench docs clean bi bi-install

help:
	@echo "make demo    - install, then build raw -> gold for the default universe (simulator, 60 sessions)"
	@echo "make dev     - start the Dagster UI (dagster dev) on workspace.yaml"
	@echo "make test    - install with dev extras and run the test suite"
	@echo "make lint    - ruff check + format check"
	@echo "make bench   - run the market-scale benchmark (results in bench_results/)"
	@echo "make bi      - set up and serve the Superset dashboards on the serving snapshot (port 8088)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-install only when the package definition changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: $(VENV)/.installed $(DAGSTER_HOME)/dagster.yaml
	MARKETFLOW_SOURCE=$${MARKETFLOW_SOURCE:-simulator} $(BIN)/python -m marketflow_assets.demo

dev: $(VENV)/.installed $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml

test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n 2 --dist loadfile

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(VENV)/.installed $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m marketflow_assets.benchmark $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .marketflow dbt/target dbt/logs .pytest_cache .ruff_cache

# Superset has its own environment (its pins conflict with ours), pinned by bi/constraints.txt and
# rebuilt only when that file changes. MARKETFLOW_BI_VENV moves it (e.g. to a CI cache).
export MARKETFLOW_BI_VENV ?= $(CURDIR)/.venv-superset
SUPERSET_PACKAGES := apache-superset duckdb-engine duckdb rich cachetools flask-caching

$(MARKETFLOW_BI_VENV)/.installed: bi/constraints.txt
	$(PYTHON) -m venv $(MARKETFLOW_BI_VENV)
	$(MARKETFLOW_BI_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MARKETFLOW_BI_VENV)/bin/python -m pip install --quiet -c bi/constraints.txt $(SUPERSET_PACKAGES)
	touch $@

bi-install: $(MARKETFLOW_BI_VENV)/.installed

bi: $(VENV)/.installed bi-install
	$(BIN)/python -m marketflow_assets.bi

docs: $(VENV)/.installed
	$(BIN)/python -m marketflow_assets.contracts.docs README.md
