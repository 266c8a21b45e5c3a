"""What a MarketFlow process start loads: building the definitions must not import dbt-core's
Python package (dbt runs as a subprocess; `assets/dagster_dbt_lean.py`) nor dagster-postgres on
an instance that is not on PostgreSQL (`instance/batched_events.py`), each a second or more of
every run worker's, CLI command's and code load's start-up."""

from __future__ import annotations

import os
import subprocess
import sys

CODE = """
import sys
import marketflow_assets.definitions as definitions
import dagster_dbt.compat
assert definitions.defs.get_assets_def(["gold", "ma_crossovers"]) is not None
loaded = sorted(
    name for name in sys.modules
    if name == "dbt" or name.startswith(("dbt.", "dagster_postgres", "psycopg2"))
)
print("loaded:", loaded, "dbt-core seen by dagster-dbt:", dagster_dbt.compat.DBT_PYTHON_VERSION)
import dbt.version  # still importable for anything that needs it
print("dbt", dbt.version.__version__)
"""


def test_building_the_definitions_loads_neither_dbt_core_nor_dagster_postgres(tmp_path):
    env = {**os.environ, "MARKETFLOW_HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", CODE], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "loaded: [] dbt-core seen by dagster-dbt: None" in done.stdout, done.stdout
    assert "dbt 1." in done.stdout
