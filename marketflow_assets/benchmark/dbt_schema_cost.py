"""What the marts' contract column schemas cost the dbt step, before vs after, in one process.

    python -m marketflow_assets.benchmark.dbt_schema_cost [--rounds N]

A small history (simulator) is built once; then the daily marts are rebuilt over the same
window `--rounds` times in each of two modes, alternating so both see the same machine load:
`before` (materializations without the column schema, no column_schema_change checks: how the
marts ran before) and `after` (as now). Reported: the median duration of the `dbt_marts` step and
of the whole run in each mode, and their ratios after/before.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
from pathlib import Path
from unittest import mock

import dagster as dg

from marketflow_assets.assets import dbt
from marketflow_assets.benchmark.automation_compare import (
    DBT_STEP,
    QUIET,
    daily_keys,
    evening_after,
    execute,
    instance_at,
    sessions,
    settings_for,
)
from marketflow_assets.definitions import build_definitions


def step_seconds(instance: dg.DagsterInstance, run_id: str, step: str) -> float:
    entries = [e for e in instance.all_logs(run_id) if e.is_dagster_event and e.step_key == step]
    start = next(e.timestamp for e in entries if e.dagster_event.is_step_start)
    end = next(
        e.timestamp
        for e in entries
        if e.dagster_event.is_step_success or e.dagster_event.is_step_failure
    )
    return end - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=20)
    args = parser.parse_args(argv)
    built, _ = sessions(args.sessions, 0)
    tags = {
        "dagster/asset_partition_range_start": built[0].isoformat(),
        "dagster/asset_partition_range_end": built[-1].isoformat(),
    }
    with tempfile.TemporaryDirectory(prefix="dbt-schema-cost-") as tmp:
        settings = settings_for(Path(tmp), 3, evening_after(built[-1]))
        defs = build_definitions(settings)
        marts = dg.AssetSelection.assets(dbt.dbt_marts) & dg.AssetSelection.keys(*daily_keys(defs))
        keys = marts.resolve(defs.resolve_asset_graph())
        other_checks = {
            k for k in defs.resolve_asset_graph().asset_check_keys if k.asset_key in keys
        } - {dg.AssetCheckKey(k, "column_schema_change") for k in keys}
        defs = dg.Definitions.merge(
            defs,
            dg.Definitions(
                jobs=[
                    dg.define_asset_job("marts_after", selection=dg.AssetSelection.keys(*keys)),
                    dg.define_asset_job(
                        "marts_before",
                        selection=dg.AssetSelection.keys(*keys).without_checks()
                        | dg.AssetSelection.checks(*other_checks),
                    ),
                ]
            ),
        )
        figures: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
        with instance_at(settings.home) as instance:
            if not execute(defs, instance, daily_keys(defs), tags=tags).success:
                raise RuntimeError("the history run failed")
            for _ in range(args.rounds):
                for mode in ("before", "after"):
                    patch = (
                        mock.patch.object(dbt, "with_contract_schema", lambda _c, e: e)
                        if mode == "before"
                        else contextlib.nullcontext()
                    )
                    with patch:
                        result = defs.resolve_job_def(f"marts_{mode}").execute_in_process(
                            tags=tags,
                            run_config=QUIET,
                            instance=instance,
                        )
                    run = result.dagster_run
                    record = instance.get_run_record_by_id(run.run_id)
                    figures[mode].append(
                        (
                            step_seconds(instance, result.run_id, DBT_STEP),
                            record.end_time - record.start_time,
                        )
                    )
    med = {m: [statistics.median(x[i] for x in f) for i in (0, 1)] for m, f in figures.items()}
    print(f"dbt marts over {len(built)} sessions, 3 tickers, {args.rounds} rounds (median s)")
    print(f"{'':<8}{'dbt step':>10}{'run':>8}")
    for mode, (step, run) in med.items():
        print(f"{mode:<8}{step:>10.2f}{run:>8.2f}")
    print(
        f"{'ratio':<8}{med['after'][0] / med['before'][0]:>10.3f}"
        f"{med['after'][1] / med['before'][1]:>8.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
