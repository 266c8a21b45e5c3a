# MarketFlow developer commands. Everything runs inside .venv, which these targets create.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Installs resolve nothing: uv installs pyproject's dependencies at the versions pinned in
# requirements.lock (constraints). After changing dependencies in pyproject.toml: `make lock`.
UV_VERSION := 0.13.9
UV := $(BIN)/uv
LOCK := requirements.lock
UV_INSTALL := $(UV) pip install --quiet --python $(BIN)/python --constraints $(LOCK)
export MARKETFLOW_HOME ?= $(CURDIR)/.marketflow
export DAGSTER_HOME ?= $(MARKETFLOW_HOME)/dagster
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export DAGSTER_DISABLE_TELEMETRY := true
# Single-run backfills: one "planned" event per asset instead of one per session (a 10-year
# backfill otherwise writes 2,520 per asset before it starts). Dagster's trade-off: partitions of
# a failed run show as missing rather than failed. See README, Performance.
export DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS ?= 1
# Hand range runs' per-session events (materializations, planned and evaluated checks) to the
# event log storage in batches of up to this many, each written in one transaction.
export DAGSTER_EVENT_BATCH_SIZE ?= 5000

.PHONY: help install install-dev lock system-deps demo dev serve bi bi-install test lint format bench docs clean repair-report

help:
	@echo "make demo    - install, then a year of history raw -> gold, every mart and chart (simulator)"
	@echo "make dev     - start the Dagster UI (dagster dev) on workspace.yaml"
	@echo "make serve   - start the read-only HTTP API on the current snapshot (127.0.0.1:8000)"
	@echo "make test    - install with dev extras and run the test suite"
	@echo "make lint    - ruff check + format check"
	@echo "make bench   - run the market-scale benchmark (results in bench_results/)"
	@echo "make lock    - re-pin requirements.lock after a dependency change in pyproject.toml"
	@echo "make repair-report - yfinance price-repair fixtures through silver vs the maintainers' fixed files"
	@echo "make bi      - set up and serve the Superset dashboards on the serving snapshot (port 8088)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(UV): | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Re-install only when the package definition or the lock changes.
$(VENV)/.installed: pyproject.toml $(LOCK) | $(UV)
	$(UV_INSTALL) -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(LOCK) | $(UV)
	$(UV_INSTALL) -e ".[dev]"
	touch $(VENV)/.installed $@

# The whole locked set: every dependency of the package and its dev extra, for Python 3.11+ on
# any platform. Add an extra here when pyproject gains one that `make install*` installs.
lock: | $(UV)
	$(UV) pip compile pyproject.toml --extra dev --universal --python-version 3.11 --quiet \
		--output-file $(LOCK)

# Byte-compile the venv once per install. uv writes no .pyc files, and where Python may not write
# them either (PYTHONDONTWRITEBYTECODE is set on the project machines) every process compiled
# dagster, dbt and pandas from source again: ~10 s of CPU per Python process, ~4 s per dbt
# invocation, and the tests start many (xdist workers, dbt, run workers, CLIs, `make demo` too).
$(VENV)/.bytecode: $(VENV)/.installed
	$(BIN)/python -m compileall -q -j 0 \
		"$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
		|| echo "WARNING: some files above did not byte-compile; they compile on import instead"
	touch $@

# The dbt manifest and parse state, built once per change of the dbt project as a deployment
# builds them (marketflow_assets/prepare.py), so no run, demo or bench parses the project first.
DBT_MANIFEST := dbt/target/manifest.json
DBT_SOURCES := dbt/dbt_project.yml dbt/profiles.yml $(shell find dbt/models dbt/macros dbt/tests -type f 2>/dev/null)
$(DBT_MANIFEST): $(VENV)/.installed $(VENV)/.bytecode $(DBT_SOURCES)
	$(BIN)/python -m marketflow_assets.prepare

install: $(VENV)/.installed $(VENV)/.bytecode $(DBT_MANIFEST)
install-dev: $(VENV)/.installed-dev $(VENV)/.bytecode $(DBT_MANIFEST)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: $(VENV)/.installed $(VENV)/.bytecode $(DAGSTER_HOME)/dagster.yaml $(DBT_MANIFEST)
	$(BIN)/python -m marketflow_assets.demo $(DEMO_ARGS)

dev: $(VENV)/.installed $(DAGSTER_HOME)/dagster.yaml $(DBT_MANIFEST)
	$(BIN)/dagster dev -w workspace.yaml

# The API on MARKETFLOW_API_HOST:MARKETFLOW_API_PORT (default 127.0.0.1:8000); new snapshots are
# picked up without a restart.
serve: $(VENV)/.installed
	$(BIN)/python -m marketflow_assets.api

# Debian packages the tests drive for real: PostgreSQL (the deployment-instance test starts its
# own server) and headless Chromium (the Superset dashboards test). Installed with apt-get when
# missing; without root the tests that need them skip with the reason.
APT_PACKAGES := postgresql chromium fonts-liberation
system-deps:
	@missing=""; for pkg in $(APT_PACKAGES); do dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				-o DPkg::Lock::Timeout=600 $$missing; \
		else \
			echo "WARNING: missing Debian packages:$$missing (run as root or apt-get install them);" \
				"the tests that need them will skip"; \
		fi; \
	fi

# pytest-xdist workers of `make test` (whole modules each, longest first: see
# marketflow_tests/schedule.py); e.g. `make test TEST_WORKERS=3` to measure another count.
TEST_WORKERS ?= 2
# The tests' temporary folders (each test's warehouse, lake, Dagster instance, Superset home) on
# a RAM file system when there is one with room (4 GiB free; a container's default /dev/shm has
# 64 MiB): their DuckDB and SQLite commits fsync thousands of times, a few ms each on a virtual
# disk, more on a busy one, during which the tests wait. Nothing a test proves depends on the
# disk (a killed process's writes are in the page cache either way). pytest keeps the folders of
# failed tests only (pyproject.toml). `make test TEST_TMPDIR=/tmp` puts them back on disk.
TEST_TMPDIR ?= $(or $(shell df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 && $$4 >= 4194304 {print "/dev/shm"}'),$(TMPDIR),/tmp)

test: system-deps $(VENV)/.installed-dev $(VENV)/.bytecode $(DBT_MANIFEST)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	TMPDIR=$(TEST_TMPDIR) $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile \
		--no-loadscope-reorder

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(VENV)/.installed $(DAGSTER_HOME)/dagster.yaml $(DBT_MANIFEST)
	$(BIN)/python -m marketflow_assets.benchmark $(BENCH_ARGS)

# yfinance's price-repair fixtures through the csv source into silver (../shared/real_data)
repair-report: $(VENV)/.installed
	$(BIN)/python -m marketflow_assets.repair_report $(REPAIR_ARGS)

clean:
	rm -rf $(VENV) .marketflow dbt/target dbt/logs .pytest_cache .ruff_cache

# Superset has its own environment (its pins conflict with ours), pinned by bi/constraints.txt and
# rebuilt only when that file changes. MARKETFLOW_BI_VENV moves it (e.g. to a CI cache).
export MARKETFLOW_BI_VENV ?= $(CURDIR)/.venv-superset
SUPERSET_PACKAGES := apache-superset duckdb-engine duckdb rich cachetools flask-caching

# Installed with the project's pinned uv (the same versions as pip would take from the
# constraints): 0.37x pip's wall time (107 s vs 288 s, warm caches, same loaded machine), and it
# reuses uv's cache across clones.
# Byte-compiled at install, as pip does: Superset's commands import thousands of modules. The
# venv has no pip: bi/constraints.txt is `.venv/bin/uv pip freeze --python .venv-superset/bin/python`.
$(MARKETFLOW_BI_VENV)/.installed: bi/constraints.txt | $(UV)
	$(UV) venv --quiet --clear --python $(PYTHON) $(MARKETFLOW_BI_VENV)
	$(UV) pip install --quiet --python $(MARKETFLOW_BI_VENV)/bin/python --compile-bytecode \
		--constraints bi/constraints.txt $(SUPERSET_PACKAGES)
	touch $@

bi-install: $(MARKETFLOW_BI_VENV)/.installed

bi: $(VENV)/.installed bi-install
	$(BIN)/python -m marketflow_assets.bi

docs: $(VENV)/.installed
	$(BIN)/python -m marketflow_assets.contracts.docs README.md
