"""dagster-dbt, imported without loading dbt-core's Python package into this process.

Why: `dagster_dbt.compat` imports dbt-core (`dbt.version`, `dbt.adapters.base.impl`,
`dbt.contracts.results`, ~1-2 s: mashumaro compiles hundreds of dataclasses) whenever it is
importable, and every MarketFlow process imports dagster-dbt to build the definitions: each run
worker, CLI command and code-server load paid it (`python -X importtime -c "import
marketflow_assets.definitions"`). MarketFlow never runs dbt in-process: dbt runs as a subprocess
(`dbt build`, `dbt parse`), and `MarketflowDbtCliResource` already skips the in-process adapter
and takes the dbt version from the package metadata.

dagster-dbt supports running without dbt-core in its environment (the dbt executable installed
elsewhere, or dbt Fusion): `compat` then defines the node and test statuses itself (the same
string values as dbt-core's) and the default selection (all nodes, which `dbt_marts` uses) is
read from the manifest. This module imports dagster-dbt with `dbt.version` hidden, so dagster-dbt
takes that path; dbt-core stays importable for anything else in the process afterwards. If
dagster-dbt or dbt-core was already imported, nothing is hidden and dagster-dbt behaves as
usual. `test_startup_imports.py` checks the path is taken; `test_asset_graph_snapshot.py` that
the assets and checks are the same; `test_dbt_marts.py` runs real dbt builds through it.
"""

import sys

_HIDDEN = "dbt.version"
_hide = _HIDDEN not in sys.modules and "dagster_dbt" not in sys.modules
if _hide:
    sys.modules[_HIDDEN] = None  # type: ignore[assignment]  # import raises ImportError
try:
    from dagster_dbt import (
        DagsterDbtCliRuntimeError,
        DagsterDbtTranslator,
        DagsterDbtTranslatorSettings,
        DbtCliResource,
        DbtProject,
        dbt_assets,
    )
finally:
    if _hide and sys.modules.get(_HIDDEN, 0) is None:
        del sys.modules[_HIDDEN]

__all__ = [
    "DagsterDbtCliRuntimeError",
    "DagsterDbtTranslator",
    "DagsterDbtTranslatorSettings",
    "DbtCliResource",
    "DbtProject",
    "dbt_assets",
]
