"""The dbt marts through Dagster: built from a clean warehouse, checked against pandas,
incremental per partition window, equal to a full refresh, ticker-scoped, and failing their
dbt tests (as asset checks) on seeded bad data.

dbt costs seconds per invocation, so the module runs four and shares them: each stage below is
a module fixture that runs once, on top of the previous one, and keeps snapshots of the tables
as they were right after it, which the tests compare.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import shutil
from dataclasses import dataclass

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from marketflow_assets import cadence
from marketflow_assets.assets.dagster_dbt_lean import DbtCliResource
from marketflow_assets.assets.dbt import (
    DBT_PROJECT_DIR,
    KEEP_INVOCATION_FOLDERS,
    KEEP_PARSE_STATES,
    PARTIAL_PARSE_FILE,
    RUN_SCOPE_ENV,
    WAREHOUSE_ENV,
    dbt_marts,
    manifest_is_fresh,
    prune_dbt_target,
)
from marketflow_assets.calendar import xnys
from marketflow_assets.definitions import build_definitions
from marketflow_tests.helpers import make_settings, materializations, materialize, query, table

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dbt_marts")]

TICKERS = "AAPL,MSFT,NVDA,KO,PEP,TSLA,JPM,^GSPC"  # two sectors with several tickers, one index
# Two years: the 200-session SMA exists from March 2023, and both kinds of cross happen after.
HISTORY = ("2022-06-01", "2024-05-24")
LATER = ("2024-05-28", "2024-06-07")  # the next sessions, across a month end
MARTS = {
    "gold.ma_crossovers": "ticker, session_date",
    "gold.sector_daily": "sector, session_date",
    "gold.monthly_returns": "ticker, month_start",
}
UPSTREAM = {
    "gold.daily_features": "ticker, session_date",
    "silver.daily_bars": "ticker, session_date",
    "silver.symbols": "ticker",
}
DBT = dg.AssetSelection.assets(dbt_marts) & cadence.daily_assets  # gold/hourly_bars: test_intraday
WITH_UPSTREAM = DBT.upstream()  # raw -> bronze -> silver -> gold.daily_features -> dbt
FULL_REFRESH = {"ops": {"dbt_marts": {"config": {"full_refresh": True}}}}
MAX_GAP_DAYS = 14  # crossover_max_gap_days in dbt/dbt_project.yml


@dataclass(frozen=True)
class Stage:
    result: dg.ExecuteInProcessResult
    tables: dict[str, pd.DataFrame]  # as right after the run

    def checks(self) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
        """The run's evaluations of the dbt tests (the Python assets have checks of their own)."""
        dbt_checks = {(c.asset_key.to_user_string(), c.name) for c in dbt_marts.check_keys}
        evaluations = {
            (e.asset_key.to_user_string(), e.check_name): e
            for e in self.result.get_asset_check_evaluations()
        }
        return {key: e for key, e in evaluations.items() if key in dbt_checks}


def snapshot(settings, names: dict[str, str]) -> dict[str, pd.DataFrame]:
    return {name: table(settings, name, order) for name, order in names.items()}


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return make_settings(tmp_path_factory.mktemp("dbt") / "home", tickers=TICKERS)


@pytest.fixture(scope="module")
def history(settings) -> Stage:
    """dbt invocation 1: every layer from an empty warehouse, the marts created by dbt."""
    result = materialize(settings, select=WITH_UPSTREAM, partition_range=HISTORY)
    return Stage(result, snapshot(settings, MARTS))


@pytest.fixture(scope="module")
def incremented(settings, history) -> Stage:
    """dbt invocation 2: the later window, the marts updated incrementally."""
    result = materialize(settings, select=WITH_UPSTREAM, partition_range=LATER)
    return Stage(result, snapshot(settings, {**MARTS, **UPSTREAM}))


@pytest.fixture(scope="module")
def refreshed(settings, incremented) -> Stage:
    """dbt invocation 3: `--full-refresh` rebuilds the marts from all the history."""
    result = materialize(settings, select=DBT, partition_range=LATER, run_config=FULL_REFRESH)
    return Stage(result, snapshot(settings, MARTS))


SCOPED_TICKER, OTHER_TICKER = "KO", "AAPL"
PLANTED_SESSION = dt.date(2024, 6, 4)
PLANTED_RETURN = 0.4242


@pytest.fixture(scope="module")
def scoped_with_bad_data(settings, refreshed) -> Stage:
    """dbt invocation 4: a run scoped to KO over the later window, on seeded bad upstream data.

    - KO's RSI is 1000 on one session: its sector's average RSI leaves [0, 100] (a `warn` test);
    - KO's last adjusted close of June is negative: its June return is below -100% (an `error`
      test, which fails the run);
    - rows that no model would write are planted in the marts for KO and for AAPL in the
      window: the scoped run must replace KO's and leave AAPL's alone."""
    last_session = dt.date.fromisoformat(LATER[1])
    con = duckdb.connect(str(settings.warehouse))
    try:
        con.execute(
            "UPDATE gold.daily_features SET rsi_14 = 1000 WHERE ticker = ? AND session_date = ?",
            [SCOPED_TICKER, PLANTED_SESSION],
        )
        con.execute(
            "UPDATE silver.daily_bars SET adj_close = -adj_close "
            "WHERE ticker = ? AND session_date = ?",
            [SCOPED_TICKER, last_session],
        )
        for ticker in (SCOPED_TICKER, OTHER_TICKER):
            # A plausible golden cross (it passes the mart's tests) that did not happen.
            con.execute(
                "INSERT INTO gold.ma_crossovers VALUES (?, ?, 'golden', 2, 1, 1, ?, -1)",
                [ticker, PLANTED_SESSION, PLANTED_SESSION - dt.timedelta(days=1)],
            )
        con.execute(
            "UPDATE gold.monthly_returns SET monthly_return = ? WHERE month_start = '2024-06-01'",
            [PLANTED_RETURN],
        )
    finally:
        con.close()
    result = materialize(
        settings,
        select=DBT,
        partition_range=LATER,
        tickers=[SCOPED_TICKER],
        raise_on_error=False,
    )
    return Stage(result, snapshot(settings, MARTS))


# -- built from a clean warehouse, every dbt test an asset check ---------------------------


def test_marts_build_from_a_clean_warehouse_and_every_dbt_test_passes_as_a_check(settings, history):
    assert history.result.success
    graph = build_definitions(settings).resolve_asset_graph()
    dbt_keys = dbt_marts.keys
    # Only the marts are assets (staging and intermediate models are ephemeral), and their
    # parents are the assets writing the dbt sources.
    parents = {
        "gold/ma_crossovers": {"gold/daily_features"},
        "gold/sector_daily": {"gold/daily_features", "silver/symbols"},
        "gold/monthly_returns": {"silver/daily_bars"},
        # built in test_intraday; hours since the open of the ticker's own exchange
        "gold/hourly_bars": {"silver/intraday_bars_1m", "silver/session_hours"},
        # test_fundamentals_pipeline builds and checks it
        "gold/sector_fundamentals_daily": {"gold/fundamentals_daily", "silver/symbols"},
    }
    assert {k.to_user_string() for k in dbt_keys} == set(parents)
    for key, expected_parents in parents.items():
        node = graph.get(dg.AssetKey.from_user_string(key))
        assert {p.to_user_string() for p in node.parent_keys} == expected_parents
        assert node.group_name == "gold"
        assert node.kinds == {"dbt", "duckdb"}
        assert node.partitions_def is not None
        assert node.backfill_policy == dg.BackfillPolicy.single_run()
        assert node.description

    # Every dbt test of the daily marts ran as a check of its model, and passed.
    expected = {
        (c.asset_key.to_user_string(), c.name)
        for c in dbt_marts.check_keys
        if c.asset_key != dg.AssetKey(["gold", "hourly_bars"])
    }
    checks = history.checks()
    assert set(checks) == expected
    assert len(expected) >= 10
    assert all(e.passed for e in checks.values()), [k for k, e in checks.items() if not e.passed]

    # One materialization per session of the window, for each mart.
    sessions = xnys().sessions_in_range(*map(dt.date.fromisoformat, HISTORY))
    mats = materializations(history.result, ["gold", "ma_crossovers"])
    assert {m.partition for m in mats} == {s.isoformat() for s in sessions}
    for name, frame in history.tables.items():
        assert len(frame) > 0, name


def test_marts_carry_their_contract_column_schema_and_a_schema_change_check(settings, incremented):
    """The column schema comes from the enforced dbt contracts in the manifest (no query at run
    time), on the asset and on every materialization, so Dagster's column_schema_change check
    compares consecutive materializations of a mart as it does for the Python tables."""
    graph = build_definitions(settings).resolve_asset_graph()
    key = dg.AssetKey(["gold", "ma_crossovers"])
    declared = graph.get(key).metadata["dagster/column_schema"]
    columns = {c.name: c for c in declared.columns}
    assert columns["ticker"].type == "varchar" and not columns["ticker"].constraints.nullable
    assert columns["sma_50"].type == "double" and columns["sma_50"].constraints.nullable
    for mart in (k for k in dbt_marts.keys if k != dg.AssetKey(["gold", "hourly_bars"])):
        assert dg.AssetCheckKey(mart, "column_schema_change") in graph.asset_check_keys
        schemas = [
            m.materialization.metadata["dagster/column_schema"].schema
            for m in materializations(incremented.result, mart.path)
        ]
        assert schemas and all(
            s == graph.get(mart).metadata["dagster/column_schema"] for s in schemas
        )
    # The second build of the marts: same contract, so the check passes against the first.
    (evaluation,) = [
        e
        for e in incremented.result.get_asset_check_evaluations()
        if e.asset_key == key and e.check_name == "column_schema_change"
    ]
    assert evaluation.passed, evaluation.metadata


# -- the numbers ---------------------------------------------------------------------------


def expected_crossovers(features: pd.DataFrame) -> pd.DataFrame:
    f = features.sort_values(["ticker", "session_date"]).reset_index(drop=True)
    spread = f["sma_50"] - f["sma_200"]
    same_ticker = f["ticker"].eq(f["ticker"].shift())
    previous = spread.shift().where(same_ticker)
    gap = (f["session_date"] - f["session_date"].shift()).dt.days
    golden = (previous <= 0) & (spread > 0)
    death = (previous >= 0) & (spread < 0)
    crossed = (golden | death) & (gap <= MAX_GAP_DAYS)
    return pd.DataFrame(
        {
            "ticker": f["ticker"],
            "session_date": f["session_date"],
            "cross_type": np.where(golden, "golden", "death"),
            "ma_spread": spread,
        }
    )[crossed].reset_index(drop=True)


def test_crossovers_are_the_sign_changes_of_sma50_minus_sma200(incremented):
    features = incremented.tables["gold.daily_features"]
    expected = expected_crossovers(features)
    actual = incremented.tables["gold.ma_crossovers"]
    assert set(expected["cross_type"]) == {"golden", "death"}  # the data has both kinds
    pd.testing.assert_frame_equal(
        actual[["ticker", "session_date", "cross_type", "ma_spread"]], expected, rtol=1e-12
    )
    # Only equities and the index with 200 sessions of history can cross; the warm-up never does.
    first_sma_200 = features.dropna(subset=["sma_200"]).groupby("ticker")["session_date"].min()
    assert (actual["session_date"] > actual["ticker"].map(first_sma_200)).all()


def test_sector_daily_aggregates_the_sectors_equities(incremented):
    features = incremented.tables["gold.daily_features"]
    symbols = incremented.tables["silver.symbols"]
    rows = features.merge(symbols[["ticker", "sector"]], on="ticker").dropna(subset=["sector"])
    assert "^GSPC" not in set(rows["ticker"])  # the index has no sector
    grouped = rows.groupby(["sector", "session_date"])
    expected = pd.DataFrame(
        {
            "tickers": grouped.size(),
            "avg_return_1d": grouped["return_1d"].mean(),
            "advancers": grouped["return_1d"].apply(lambda r: int((r > 0).sum())),
            "decliners": grouped["return_1d"].apply(lambda r: int((r < 0).sum())),
            "share_above_sma_200": grouped.apply(
                lambda g: (
                    (g["adj_close"] > g["sma_200"]).sum() / g["sma_200"].notna().sum()
                    if g["sma_200"].notna().any()
                    else np.nan
                ),
                include_groups=False,
            ),
            "avg_rsi_14": grouped["rsi_14"].mean(),
            "total_dollar_volume": grouped["dollar_volume"].sum(),
        }
    ).reset_index()
    actual = incremented.tables["gold.sector_daily"]
    pd.testing.assert_frame_equal(actual[expected.columns], expected, check_dtype=False, rtol=1e-12)
    assert actual.groupby("sector")["tickers"].max().to_dict()["Technology"] == 3
    assert actual["share_above_sma_200"].between(0, 1).any()


def test_monthly_returns_compound_from_adjusted_closes(incremented):
    bars = incremented.tables["silver.daily_bars"]
    bars = bars.assign(month_start=bars["session_date"].dt.to_period("M").dt.to_timestamp())
    month_end = (
        bars.sort_values("session_date")
        .groupby(["ticker", "month_start"])
        .agg(sessions=("session_date", "size"), adj_close=("adj_close", "last"))
        .reset_index()
    )
    previous_month = month_end.assign(
        month_start=month_end["month_start"] + pd.DateOffset(months=1)
    )
    expected = month_end.merge(
        previous_month[["ticker", "month_start", "adj_close"]].rename(
            columns={"adj_close": "base_adj_close"}
        ),
        on=["ticker", "month_start"],
        how="left",
    )
    expected["monthly_return"] = expected["adj_close"] / expected["base_adj_close"] - 1
    actual = incremented.tables["gold.monthly_returns"]
    columns = ["ticker", "month_start", "sessions", "base_adj_close", "monthly_return"]
    pd.testing.assert_frame_equal(
        actual[columns],
        expected.sort_values(["ticker", "month_start"])[columns].reset_index(drop=True),
        check_dtype=False,
        rtol=1e-12,
    )
    # The product of the daily returns is the same number.
    features = incremented.tables["gold.daily_features"]
    ko_march = features[
        (features["ticker"] == "KO") & (features["session_date"].dt.strftime("%Y-%m") == "2024-03")
    ]
    compounded = (1 + ko_march["return_1d"]).prod() - 1
    row = actual[(actual["ticker"] == "KO") & (actual["month_start"] == "2024-03-01")]
    assert row["monthly_return"].item() == pytest.approx(compounded, rel=1e-9)
    # The first month in the warehouse has no base; June 2024 is month-to-date.
    assert actual.loc[actual["month_start"] == "2022-06-01", "monthly_return"].isna().all()
    june = actual[actual["month_start"] == "2024-06-01"]
    assert (june["last_session_date"] == pd.Timestamp(LATER[1])).all()


# -- incremental = full refresh ------------------------------------------------------------


def test_incremental_run_adds_only_its_window_and_equals_a_full_refresh(
    history, incremented, refreshed
):
    start = pd.Timestamp(LATER[0])
    for name, key in (
        ("gold.ma_crossovers", "session_date"),
        ("gold.sector_daily", "session_date"),
    ):
        before, after = history.tables[name], incremented.tables[name]
        pd.testing.assert_frame_equal(after[after[key] < start].reset_index(drop=True), before)
        assert after[key].max() <= pd.Timestamp(LATER[1])
    sector_sessions = incremented.tables["gold.sector_daily"]["session_date"]
    assert set(sector_sessions[sector_sessions >= start]) == set(
        pd.to_datetime(xnys().sessions_in_range(*map(dt.date.fromisoformat, LATER)))
    )
    # Monthly returns: the months the window touches (May, completed, and June) are rewritten.
    before, after = (
        history.tables["gold.monthly_returns"],
        incremented.tables["gold.monthly_returns"],
    )
    untouched = pd.Timestamp("2024-05-01")
    pd.testing.assert_frame_equal(
        after[after["month_start"] < untouched].reset_index(drop=True),
        before[before["month_start"] < untouched].reset_index(drop=True),
    )
    assert (after.loc[after["month_start"] == untouched, "last_session_date"] == "2024-05-31").all()
    assert (
        before.loc[before["month_start"] == untouched, "last_session_date"] == "2024-05-24"
    ).all()

    # The incremental run materialized exactly the window's partitions.
    mats = materializations(incremented.result, ["gold", "sector_daily"])
    assert {m.partition for m in mats} == {
        s.isoformat() for s in xnys().sessions_in_range(*map(dt.date.fromisoformat, LATER))
    }

    assert refreshed.result.success
    for name in MARTS:
        pd.testing.assert_frame_equal(refreshed.tables[name], incremented.tables[name], rtol=1e-12)


# -- ticker scope and failing dbt tests ----------------------------------------------------


def test_ticker_scoped_run_replaces_only_its_tickers_rows(scoped_with_bad_data, refreshed):
    crossovers = scoped_with_bad_data.tables["gold.ma_crossovers"]
    planted = crossovers["session_date"].eq(pd.Timestamp(PLANTED_SESSION)) & crossovers[
        "sma_50"
    ].eq(2)
    # KO's crossovers of the window were replaced (its planted row is gone); AAPL's were not
    # touched (its planted row survives, where an unscoped run would have replaced it).
    assert crossovers.loc[planted, "ticker"].tolist() == [OTHER_TICKER]
    pd.testing.assert_frame_equal(
        crossovers[~planted].reset_index(drop=True), refreshed.tables["gold.ma_crossovers"]
    )

    monthly = scoped_with_bad_data.tables["gold.monthly_returns"]
    june = monthly[monthly["month_start"] == pd.Timestamp("2024-06-01")].set_index("ticker")
    assert june.loc[SCOPED_TICKER, "monthly_return"] < -1  # recomputed, from the bad close
    others = june.drop(index=SCOPED_TICKER)
    assert (others["monthly_return"] == PLANTED_RETURN).all()  # untouched
    before = refreshed.tables["gold.monthly_returns"]
    pd.testing.assert_frame_equal(
        monthly[monthly["month_start"] < pd.Timestamp("2024-05-01")],
        before[before["month_start"] < pd.Timestamp("2024-05-01")],
    )


def test_seeded_violations_fail_their_checks_with_severity(scoped_with_bad_data):
    result = scoped_with_bad_data.result
    checks = scoped_with_bad_data.checks()
    rsi = checks[("gold/sector_daily", "sector_daily_avg_rsi_14_within_0_100")]
    assert not rsi.passed
    assert rsi.severity == dg.AssetCheckSeverity.WARN
    assert rsi.metadata["dagster_dbt/failed_row_count"].value == 1
    loss = checks[("gold/monthly_returns", "monthly_returns_monthly_return_above_minus_1")]
    assert not loss.passed
    assert loss.severity == dg.AssetCheckSeverity.ERROR
    assert loss.metadata["dagster_dbt/failed_row_count"].value == 1
    failed = {key for key, e in checks.items() if not e.passed}
    assert failed == {
        ("gold/sector_daily", "sector_daily_avg_rsi_14_within_0_100"),
        ("gold/monthly_returns", "monthly_returns_monthly_return_above_minus_1"),
    }
    # dbt tests a model after building it: all three marts were written, and the error-level
    # failure fails the run (the warning alone would not).
    assert not result.success
    materialized = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()}
    assert materialized == {
        "gold/ma_crossovers",
        "gold/sector_daily",
        "gold/monthly_returns",
        "gold/sector_fundamentals_daily",
    }


def test_dbt_writes_only_the_marts_to_the_settings_warehouse(settings, history):
    # The module's tmp home, not $MARKETFLOW_HOME: dbt got the warehouse path from the run. The
    # marts are tables in `gold` (not dbt's default `main_gold`); the ephemeral staging and
    # intermediate models and dbt's temporary relations leave nothing behind.
    objects = query(
        settings, "SELECT table_schema, table_name, table_type FROM information_schema.tables"
    )
    assert not objects["table_schema"].str.contains("main|staging|dbt").any()
    assert not objects["table_name"].str.contains("^(?:stg|int)_|dbt").any()
    marts = objects[
        objects["table_name"].isin(["ma_crossovers", "sector_daily", "monthly_returns"])
    ]
    assert set(marts["table_schema"]) == {"gold"}
    assert set(marts["table_type"]) == {"BASE TABLE"}
    assert len(marts) == 3


def test_manifest_is_reparsed_only_when_the_project_changed(tmp_path):
    # On a copy of the project, without running dbt: what `prepare_manifest` decides.
    from dagster_dbt import DbtProject

    project_dir = tmp_path / "dbt"
    shutil.copytree(DBT_PROJECT_DIR, project_dir, ignore=shutil.ignore_patterns("target", "logs"))
    project = DbtProject(project_dir=project_dir)
    assert not manifest_is_fresh(project)  # a fresh clone has no manifest

    def age_everything(seconds_ago: float) -> None:
        stamp = dt.datetime.now().timestamp() - seconds_ago
        for path in [project_dir, *project_dir.rglob("*")]:
            os.utime(path, (stamp, stamp))

    state = project.manifest_path.with_name(PARTIAL_PARSE_FILE)  # dbt's partial-parse state

    def parsed(seconds_ago: float = 0) -> None:
        stamp = dt.datetime.now().timestamp() - seconds_ago
        for path in (project.manifest_path, state):
            os.utime(path, (stamp, stamp))

    project.manifest_path.parent.mkdir()
    project.manifest_path.write_text("{}")
    age_everything(60)
    os.utime(project.manifest_path)
    assert not manifest_is_fresh(project)  # a manifest without the state: runs would parse all
    state.write_bytes(b"")
    parsed(30)
    assert manifest_is_fresh(project)

    (project_dir / "models" / "marts" / "sector_daily.sql").touch()  # an edit
    assert not manifest_is_fresh(project)
    parsed()
    assert manifest_is_fresh(project)

    age_everything(60)
    os.utime(project.manifest_path, (0, dt.datetime.now().timestamp() - 30))
    os.utime(state, (0, dt.datetime.now().timestamp() - 30))
    (project_dir / "models" / "marts" / "monthly_returns.sql").unlink()  # a deletion
    assert not manifest_is_fresh(project)


# -- what a dbt invocation costs beyond its SQL -------------------------------------------------


def dbt_log_events(result: dg.ExecuteInProcessResult) -> list[str]:
    """Names of the events dbt logged (its debug log, in the invocation's own target folder,
    `<op>-<run id[:7]>-<uuid>` as dagster-dbt names it) during the run's dbt build."""
    (folder,) = (DBT_PROJECT_DIR / "target").glob(f"dbt_marts-{result.run_id[:7]}-*")
    lines = (folder / "dbt.log").read_text().splitlines()
    return [json.loads(line)["info"]["name"] for line in lines if line.startswith("{")]


def test_runs_with_different_windows_keep_dbts_partial_parse_state(history, incremented):
    # Two runs over different session windows (HISTORY, LATER) on one warehouse. The window
    # reaches dbt outside its vars, so the parse state of the first run stays valid for the
    # second, which parses nothing. dbt keys its state on the warehouse path too, which reaches
    # it as the file's name (dbt runs in the warehouse's folder): the first run, on this module's
    # new home, parses nothing either (the state of another home, or the manifest's, serves it).
    for stage in (history, incremented):
        events = dbt_log_events(stage.result)
        assert "UnableToPartialParse" not in events
        assert "PartialParsingSkipParsing" in events
    for stage in (history, incremented):
        # The scope was defined for the run and dropped at its end.
        assert dbt_log_events(stage.result).count("LogHookEndLine") == 2
    # Only the dbt process saw the run's scope: the run's own environment is as it was.
    assert RUN_SCOPE_ENV not in os.environ and WAREHOUSE_ENV not in os.environ


def test_dbt_target_keeps_only_the_newest_invocation_folders_and_parse_states(tmp_path):
    """Each dbt invocation leaves ~2 MB in the checkout's dbt/target: daily runs must not pile up."""
    target = tmp_path / "target"
    (target / "partial_parse").mkdir(parents=True)
    extra = 5
    for n in range(KEEP_INVOCATION_FOLDERS + extra):
        folder = target / f"dbt_marts-run{n:04d}-abc"
        (folder / "compiled").mkdir(parents=True)
        (folder / "dbt.log").write_text("log")
        os.utime(folder, (1_000_000 + n, 1_000_000 + n))
    for n in range(KEEP_PARSE_STATES + extra):
        state = target / "partial_parse" / f"{n:016x}.msgpack"
        state.write_bytes(b"state")
        os.utime(state, (1_000_000 + n, 1_000_000 + n))
    other = [target / "other_op-run0000-abc", target / "manifest.json", target / PARTIAL_PARSE_FILE]
    other[0].mkdir()
    for path in other[1:]:
        path.write_text("{}")
    prune_dbt_target(target, "dbt_marts")
    folders = sorted(path.name for path in target.glob("dbt_marts-*"))
    assert folders == [
        f"dbt_marts-run{n:04d}-abc" for n in range(extra, KEEP_INVOCATION_FOLDERS + extra)
    ]
    states = sorted(path.name for path in (target / "partial_parse").iterdir())
    assert states == [f"{n:016x}.msgpack" for n in range(extra, KEEP_PARSE_STATES + extra)]
    assert all(path.exists() for path in other)


def test_dbt_cli_resource_overrides_still_exist_upstream():
    # MarketflowDbtCliResource replaces these dagster-dbt members to skip a `dbt --version`
    # subprocess and an in-process adapter per invocation; a dagster-dbt upgrade that renames
    # them would silently bring those seconds back.
    assert isinstance(DbtCliResource.__dict__.get("_cli_version"), functools.cached_property)
    assert callable(DbtCliResource.__dict__.get("_initialize_dbt_core_adapter"))


def test_dagster_dbt_runs_here_without_dbt_core_and_its_statuses_are_dbt_cores():
    """`assets/dagster_dbt_lean.py` imports dagster-dbt without dbt-core (so these tests run dbt
    through that path); dagster-dbt then uses its own status and node-type enums, which must
    name dbt-core's values, or dbt's results would stop mapping to materializations and checks."""
    import dagster_dbt.compat as compat
    from dbt.contracts.results import NodeStatus, TestStatus
    from dbt.node_types import REFABLE_NODE_TYPES, NodeType

    assert compat.DBT_PYTHON_VERSION is None
    assert {s.value for s in NodeStatus} <= {s.value for s in compat.NodeStatus}
    assert {s.value for s in TestStatus} == {s.value for s in compat.TestStatus}
    for name in ("Model", "Seed", "Snapshot", "Test", "Source"):
        assert getattr(compat.NodeType, name).value == getattr(NodeType, name).value
    assert sorted(map(str, compat.REFABLE_NODE_TYPES)) == sorted(map(str, REFABLE_NODE_TYPES))
