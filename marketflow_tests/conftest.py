from __future__ import annotations

import os

import pytest

# Tests never reach a provider or a user's Dagster instance.
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "true")
# Runs record their events the way `make dev` and `make demo` runs do (the Makefile exports
# these): one planned event per asset of a range, and per-session events handed over in batches.
os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")
os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", "5000")


@pytest.fixture
def settings(tmp_path):
    from marketflow_tests.helpers import make_settings

    return make_settings(tmp_path / "home")


@pytest.fixture(autouse=True)
def isolated_dagster_home(tmp_path_factory, monkeypatch):
    """Each test gets its own empty Dagster instance directory, never the developer's
    `.marketflow/dagster` (which `make test` exports but only `make demo`/`make dev` create)."""
    home = tmp_path_factory.mktemp("dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def isolated_marketflow_home(tmp_path_factory, monkeypatch):
    """Settings read from the environment (`Settings.from_env()`) see an empty home of their own,
    never the settings file `make demo` leaves in the developer's `.marketflow`."""
    home = tmp_path_factory.mktemp("marketflow_home")
    monkeypatch.setenv("MARKETFLOW_HOME", str(home))
    return home
