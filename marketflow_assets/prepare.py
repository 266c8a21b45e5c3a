"""`python -m marketflow_assets.prepare`: build once what a deployment builds at install time.

That is the dbt project's manifest and partial-parse state (`assets/dbt.py`, `prepare_manifest`;
dagster-dbt's own deployments run `dagster-dbt project prepare-and-package` for the same). The
definitions also prepare them when they are missing or stale, so nothing breaks without this
step; it only moves the one-off `dbt parse` (seconds) out of the first run, as `make install`
does, and `make bench` before it measures anything.
"""

from __future__ import annotations

from marketflow_assets.assets.dbt import dbt_project, prepare_manifest


def main() -> None:
    # Importing assets.dbt prepared them already; this says where they are.
    print(f"dbt manifest ready: {prepare_manifest(dbt_project)}")


if __name__ == "__main__":
    main()
