from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import pytest

# Tests never reach a provider or a user's Dagster instance.
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "true")
# Runs record their events the way `make dev` and `make demo` runs do (the Makefile exports
# these): one planned event per asset of a range, and per-session events handed over in batches.
os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")
os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", "5000")
# Test modules are imported (collected) before any fixture runs, and importing
# `marketflow_assets.definitions` builds `defs` from the environment: that must see an empty home,
# never the developer's `.marketflow` that the Makefile exports and `make demo` fills (its
# settings file moves the first session, so the UI-view tests would see other partitions).
_COLLECTION_HOME = Path(tempfile.mkdtemp(prefix="marketflow-tests-"))
atexit.register(shutil.rmtree, _COLLECTION_HOME, ignore_errors=True)
for _variable, _name in (("MARKETFLOW_HOME", "marketflow"), ("DAGSTER_HOME", "dagster")):
    (_COLLECTION_HOME / _name).mkdir()
    os.environ[_variable] = str(_COLLECTION_HOME / _name)


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


def pytest_collection_modifyitems(config, items):
    """Modules with the most slow end-to-end tests first, each module's tests in their own order.
    `make test` runs `-n 2 --dist loadfile --no-loadscope-reorder`: xdist hands whole modules to
    its workers in this order, so the long ones (the crash suite, Superset, the API under a run)
    start first and the many short modules even out the end (longest first), instead of a long
    module starting last on one worker while the other idles."""
    slow = Counter(item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[item.nodeid.split("::")[0]])
