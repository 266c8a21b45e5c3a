from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from marketflow_tests.schedule import WORKER_INPUT, ModuleTimer, known_seconds, longest_first

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

# anyio is a pytest plugin, so pytest rewrites its modules on import with `ast.parse`, and its
# asyncio backend is first imported from the thread Starlette's TestClient starts. CPython 3.11
# keeps the AST constructor's recursion depth in interpreter-wide state (python/cpython#106905),
# so that parse can fail with "SystemError: AST constructor recursion depth mismatch" when another
# thread or a finalizer parses at the same time (seen once in CI). Import it here, in the main
# thread, before any test starts a thread.
import anyio._backends._asyncio  # noqa: E402, F401


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


@pytest.fixture(params=["memory", "sqlite"])
def batched_instance(request, isolated_dagster_home, monkeypatch):
    """A Dagster instance on MarketFlow's batched event log: in memory, or on SQLite from the
    repo's `dagster.yaml` (as `make dev`), handed event batches as the Makefile sets it."""
    import dagster as dg

    from marketflow_assets.instance.batched_events import (
        BatchedSqliteEventLogStorage,
        batched_ephemeral_instance,
    )

    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "5000")
    if request.param == "memory":
        yield batched_ephemeral_instance()
        return
    shutil.copy(Path(__file__).resolve().parents[1] / "dagster.yaml", isolated_dagster_home)
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.event_log_storage, BatchedSqliteEventLogStorage)
        yield instance


def pytest_collection_modifyitems(config, items):
    """Modules longest first, each module's tests in their own order (see schedule.py: `make
    test` runs `-n 2 --dist loadfile --no-loadscope-reorder`, whole modules to each worker in
    this order, so the two workers end together)."""
    longest_first(items, config)


def pytest_configure(config):
    if not hasattr(config, "workerinput"):  # the xdist controller, or a run without xdist
        config.pluginmanager.register(ModuleTimer(config), "marketflow-module-timer")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """xdist: every worker sorts by the controller's seconds (schedule.known_seconds)."""
    node.workerinput[WORKER_INPUT] = known_seconds(node.config)
