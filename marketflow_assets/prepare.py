"""`python -m marketflow_assets.prepare`: build once what a deployment builds at install time.

That is the dbt project's manifest and partial-parse state (`assets/dbt.py`, `prepare_manifest`;
dagster-dbt's own deployments run `dagster-dbt project prepare-and-package` for the same). The
definitions also prepare them when they are missing or stale, so nothing breaks without this
step; it only moves the one-off `dbt parse` (seconds) out of the first run, as `make install`
does, and `make bench` before it measures anything.
"""

from __future__ import annotations

import time


def main() -> None:
    started = time.monotonic()
    from marketflow_assets.assets.dbt import dbt_project, prepare_manifest

    manifest = prepare_manifest(dbt_project)
    print(f"dbt manifest ready: {manifest} ({time.monotonic() - started:.1f} s)")


if __name__ == "__main__":
    main()
