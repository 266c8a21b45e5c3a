"""Checks specific to silver.daily_bars (on top of `contract` and `keys`), all in DuckDB SQL over
the suite's slice (`_scoped`):

- `ohlc_consistency` (ERROR, blocking): positive prices, low <= open, close <= high on traded and
  adjusted prices, non-negative volumes.
- `row_reconciliation` (ERROR, blocking): per (ticker, session), raw rows = bronze rows = silver
  rows + rejected rows. Nothing is lost or invented between the layers.
- `completeness` (WARN): every ticker of the universe has a silver bar for every session of its
  own exchange since its first bar; the missing (ticker, session) pairs are listed with why (the rejection reason,
  or no bar from the provider). WARN: data the provider did not serve is not a pipeline error.
"""

import datetime as dt

import dagster as dg
import numpy as np
import pandas as pd

from marketflow_assets.checks.framework import ERROR, WARN, CheckDef, CheckRun, Outcome, Scope
from marketflow_assets.checks.raw import objects_in_scope, raw_manifests, raw_row_counts
from marketflow_assets.exchanges import exchange_sessions, ticker_mic_sql, union_sessions
from marketflow_assets.resources import ticker_scope

RAW_DAILY = dg.AssetKey(["raw", "daily_bars"])
BRONZE_DAILY = dg.AssetKey(["bronze", "daily_bars"])
REJECTED = dg.AssetKey(["silver", "rejected_bars"])
EPS = 1e-9  # the contract's tolerance for OHLC ordering


def _between(day_column: str, scope: Scope) -> tuple[str, list]:
    if not scope.partitioned:
        return "TRUE", []
    return f"{day_column} BETWEEN ? AND ?", [scope.start, scope.end]


# -- ohlc_consistency ---------------------------------------------------------------------------
def _positive(column: str) -> str:
    return f"({column} > 0 AND NOT isnan({column}))"


def _ohlc_rules(prefix: str, label: str) -> list[tuple[str, str]]:
    o, h, lo, c = (f"{prefix}{x}" for x in ("open", "high", "low", "close"))
    rules = [(_positive(col), f"{col} not positive") for col in (o, h, lo, c)]
    rules += [
        (f"{lo} <= {h} * (1 + {EPS})", f"{label} low > high"),
        (
            f"{o} BETWEEN {lo} * (1 - {EPS}) AND {h} * (1 + {EPS})",
            f"{label} open outside [low, high]",
        ),
        (
            f"{c} BETWEEN {lo} * (1 - {EPS}) AND {h} * (1 + {EPS})",
            f"{label} close outside [low, high]",
        ),
    ]
    return rules


OHLC_RULES = (
    _ohlc_rules("", "traded")
    + _ohlc_rules("adj_", "adjusted")
    + [
        ("volume >= 0", "volume negative"),
        ("adj_volume >= 0 AND NOT isnan(adj_volume)", "adj_volume negative or NaN"),
    ]
)


def ohlc_consistency_check() -> CheckDef:
    violations = ", ".join(
        f"CASE WHEN NOT coalesce({rule}, FALSE) THEN '{label}' END" for rule, label in OHLC_RULES
    )

    def evaluate(run: CheckRun) -> Outcome:
        return run.failures(
            f"""
            SELECT * FROM (
                SELECT ticker, session_date, open, high, low, close, volume,
                    adj_open, adj_high, adj_low, adj_close, adj_volume,
                    concat_ws('; ', {violations}) AS violations
                FROM _scoped
            ) WHERE violations <> ''
            """,
            ok="prices are positive and ordered (low <= open, close <= high), traded and adjusted",
            failed="{n} bar(s) with non-positive or inconsistent OHLC on {tickers} ticker(s)",
            checked=run.state["scoped_rows"],
        )

    return CheckDef(
        name="ohlc_consistency",
        description=(
            "Every silver bar has positive prices, low <= open, close <= high (traded and "
            "adjusted, 1e-9 relative tolerance) and non-negative volumes. Failing rows: bars. "
            "Blocking: gold is not built from a partition that fails it."
        ),
        evaluate=evaluate,
        severity=ERROR,
        blocking=True,
    )


# -- row_reconciliation -------------------------------------------------------------------------
def reconciliation_check(
    *,
    interval: str = "1d",
    dataset: str = "daily_bars",
    bronze_table: str = "bronze.daily_bars",
    rejected_table: str = "silver.rejected_bars",
    raw_asset: dg.AssetKey = RAW_DAILY,
    bronze_asset: dg.AssetKey = BRONZE_DAILY,
) -> CheckDef:
    """raw = bronze = silver + rejected per (ticker, session), for one bar interval. The silver
    table is the suite's (`_scoped`); reusable for one-minute bars with interval='1m'."""

    def evaluate(run: CheckRun) -> Outcome:
        scope = run.scope
        tickers = ticker_scope(run.context)
        where, params = _between("session_date", scope)
        if tickers is not None:  # a ticker-scoped run rebuilt (and answers for) those only
            where += " AND list_contains(?, ticker)"
            params = [*params, list(tickers)]
        lake = run.resources.lake.raw()
        # Raw as bronze saw it: fetches another run landed after bronze was built for these
        # sessions are not bronze's to have yet (they reach it with that run's own bronze step).
        built = bronze_built_at(run.context, bronze_asset, scope)
        manifests = [
            m for m in raw_manifests(run, dataset) if built is None or m.landed_at <= built
        ]
        objects = objects_in_scope(manifests, scope)
        every_ticker = {s.isoformat() for s in scope.sessions} if tickers is not None else None
        raw = raw_row_counts(lake, objects, dataset, detail=every_ticker)
        if tickers is not None:
            raw = raw[raw["ticker"].isin(tickers)]
        bronze_totals = run.df(
            f"SELECT session_date, count(*) AS rows FROM {bronze_table} "
            f"WHERE {where} AND interval = '{interval}' GROUP BY ALL",
            params,
        )
        # Sessions whose raw total differs from bronze's are re-counted per ticker (reading
        # their objects), so the failure names the tickers; the others match as a whole.
        diff = (
            raw.groupby("session_date")["rows"]
            .sum()
            .sub(bronze_totals.set_index("session_date")["rows"], fill_value=0)
        )
        mismatched = {d.strftime("%Y-%m-%d") for d in diff[diff != 0].index}
        if mismatched:
            raw = raw_row_counts(lake, objects, dataset, detail=mismatched)
        detail = raw[raw["ticker"].notna()]
        run.con.register("_raw_rows", detail)
        run.con.register(
            "_detailed",
            pd.DataFrame(
                {"session_date": sorted(set(detail["session_date"]))}, dtype="datetime64[ns]"
            ),
        )
        try:
            outcome = run.failures(
                f"""
                WITH counts AS (
                    SELECT session_date, ticker, 0 AS raw, 1 AS bronze, 0 AS silver, 0 AS rejected
                    FROM {bronze_table} WHERE {where} AND interval = '{interval}'
                    UNION ALL
                    SELECT session_date, ticker, 0, 0, 1, 0 FROM _scoped WHERE {where}
                    UNION ALL
                    SELECT session_date, ticker, 0, 0, 0, 1 FROM {rejected_table}
                    WHERE {where} AND interval = '{interval}'
                    UNION ALL
                    SELECT session_date::DATE, ticker, rows, 0, 0, 0 FROM _raw_rows
                ),
                pairs AS (
                    SELECT session_date, ticker,
                        sum(raw)::BIGINT AS raw_rows, sum(bronze)::BIGINT AS bronze_rows,
                        sum(silver)::BIGINT AS silver_rows, sum(rejected)::BIGINT AS rejected_rows,
                        session_date IN (SELECT session_date::DATE FROM _detailed) AS detailed
                    FROM counts GROUP BY ALL
                )
                SELECT session_date, ticker,
                    CASE WHEN detailed THEN raw_rows END AS raw_rows,
                    bronze_rows, silver_rows, rejected_rows,
                    concat_ws('; ',
                        CASE WHEN detailed AND raw_rows <> bronze_rows
                            THEN 'raw ' || raw_rows || ' <> bronze ' || bronze_rows END,
                        CASE WHEN bronze_rows <> silver_rows + rejected_rows
                            THEN 'bronze ' || bronze_rows || ' <> silver ' || silver_rows
                                || ' + rejected ' || rejected_rows END
                    ) AS problem
                FROM pairs
                WHERE (detailed AND raw_rows <> bronze_rows)
                    OR bronze_rows <> silver_rows + rejected_rows
                """,
                params + params + params,
                ok="raw rows = bronze rows = silver rows + rejected rows for every ticker and session",
                failed="{n} (ticker, session) pair(s) do not reconcile across raw, bronze, silver "
                "and rejected rows",
                checked=int(bronze_totals["rows"].sum()),
                metadata=_totals(run, raw, bronze_totals, rejected_table, interval, where, params),
            )
        finally:
            run.con.unregister("_raw_rows")
            run.con.unregister("_detailed")
        return outcome

    return CheckDef(
        name="row_reconciliation",
        description=(
            f"Per ticker and session ({interval} bars): raw rows (the latest fetch per bar, "
            "counted from the lake's manifests, reading objects only where fetches overlap or "
            "totals differ) = bronze rows = silver rows + rejected rows. Failing rows: (ticker, "
            "session) pairs that do not reconcile. Blocking: rows were lost or invented."
        ),
        evaluate=evaluate,
        severity=ERROR,
        blocking=True,
        additional_deps=(raw_asset, bronze_asset, REJECTED),
    )


def bronze_built_at(
    context: dg.AssetCheckExecutionContext, bronze_asset: dg.AssetKey, scope: Scope
) -> dt.datetime | None:
    """When bronze was last built for the scope's first and last sessions (the later of the
    two); None for unpartitioned scopes or if Dagster has no record (then all raw counts)."""
    if not scope.partitioned:
        return None
    stamps = []
    for session in {scope.start, scope.end}:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=bronze_asset, asset_partitions=[session.isoformat()]),
            limit=1,
        ).records
        stamps += [r.timestamp for r in records]
    return dt.datetime.fromtimestamp(max(stamps), dt.UTC) if stamps else None


def _totals(run, raw, bronze_totals, rejected_table, interval, where, params) -> dict:
    reasons = run.df(
        f"SELECT reason, count(*) AS n FROM {rejected_table} WHERE {where} "
        f"AND interval = '{interval}' GROUP BY ALL ORDER BY n DESC",
        params,
    )
    return {
        "raw_rows": int(raw["rows"].sum()),
        "bronze_rows": int(bronze_totals["rows"].sum()),
        "silver_rows": int(run.state["scoped_rows"]),
        "rejected_rows": int(reasons["n"].sum()) if len(reasons) else 0,
        "rejected_by_reason": {
            r: int(n) for r, n in zip(reasons["reason"], reasons["n"], strict=True)
        },
    }


# -- completeness -------------------------------------------------------------------------------
def _own_sessions(mics: pd.Series, sessions: list[dt.date]) -> pd.DataFrame:
    """(mic, session_date) for each exchange's own sessions among `sessions`."""
    days = pd.to_datetime(pd.Series(sessions, dtype=object)).to_numpy().astype("datetime64[D]")
    frames = [
        pd.DataFrame({"mic": mic, "session_date": days[np.isin(days, exchange_sessions(mic))]})
        for mic in sorted(set(mics))
    ]
    if not frames:
        return pd.DataFrame({"mic": pd.Series(dtype=str), "session_date": days[:0]})
    frame = pd.concat(frames, ignore_index=True)
    frame["session_date"] = frame["session_date"].astype("datetime64[ns]")
    return frame


def completeness_check() -> CheckDef:
    def evaluate(run: CheckRun) -> Outcome:
        scope = run.scope
        universe = run.resources.universe.symbols()
        where, params = _between("session_date", scope)
        firsts = run.df(
            f"SELECT ticker, {ticker_mic_sql()} AS mic, min(session_date) AS first_bar "
            "FROM silver.daily_bars WHERE list_contains(?, ticker) GROUP BY ALL",
            [universe],
        )
        sessions = scope.sessions
        if not scope.partitioned:
            first, last = run.con.execute(
                "SELECT min(session_date), max(session_date) FROM _scoped"
            ).fetchall()[0]
            days = union_sessions(set(firsts["mic"].dropna())).astype("datetime64[D]")
            sessions = (
                days[(days >= np.datetime64(first, "D")) & (days <= np.datetime64(last, "D"))]
                if first
                else days[:0]
            ).tolist()
        run.con.register("_firsts", firsts)
        # Each ticker is judged on its own exchange's sessions (a London holiday is no missing
        # bar for a .L ticker): (mic, session) pairs, one calendar lookup per exchange.
        run.con.register("_sessions", _own_sessions(firsts["mic"].dropna(), sessions))
        try:
            expected = int(
                run.scalar(
                    "SELECT count(*) FROM _firsts f JOIN _sessions s "
                    "ON s.mic = f.mic AND s.session_date::DATE >= f.first_bar"
                )
            )
            never = sorted(set(universe) - set(firsts["ticker"]))
            return run.failures(
                f"""
                WITH expected AS (
                    SELECT f.ticker, s.session_date::DATE AS session_date
                    FROM _firsts f JOIN _sessions s
                        ON s.mic = f.mic AND s.session_date::DATE >= f.first_bar
                ),
                missing AS (
                    SELECT * FROM expected e
                    WHERE NOT EXISTS (
                        SELECT 1 FROM _scoped b
                        WHERE b.ticker = e.ticker AND b.session_date = e.session_date
                    )
                ),
                rejected AS (
                    SELECT ticker, session_date, string_agg(DISTINCT reason, ', ') AS reasons
                    FROM silver.rejected_bars WHERE {where} AND interval = '1d' GROUP BY ALL
                )
                SELECT m.ticker, m.session_date, f.first_bar,
                    coalesce('rejected: ' || r.reasons, 'no bar from the provider') AS why
                FROM missing m
                JOIN _firsts f USING (ticker)
                LEFT JOIN rejected r USING (ticker, session_date)
                """,
                params,
                ok=f"all {expected} expected (ticker, session) bars are in silver",
                failed="{n} (ticker, session) bar(s) missing in silver for {tickers} ticker(s) "
                "over {sessions} session(s)",
                checked=expected,
                metadata={"universe_size": len(universe), "tickers_without_any_bar": never},
            )
        finally:
            run.con.unregister("_firsts")
            run.con.unregister("_sessions")

    return CheckDef(
        name="completeness",
        description=(
            "Every ticker of the universe has a silver bar for every session of its own exchange "
            "(in the run's sessions) since its first silver bar. Failing rows: missing (ticker, session) pairs, each with why (the "
            "rejection reason from silver.rejected_bars, or no bar from the provider). WARN. "
            "Universe tickers with no bar at all are listed in `tickers_without_any_bar` (see "
            "raw provider_errors)."
        ),
        evaluate=evaluate,
        severity=WARN,
        additional_deps=(REJECTED,),
    )
