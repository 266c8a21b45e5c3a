from __future__ import annotations

import os

import pytest

# Tests never reach a provider or a user's Dagster instance.
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "true")


@pytest.fixture
def settings(tmp_path):
    from marketflow_tests.helpers import make_settings

    return make_settings(tmp_path / "home")
