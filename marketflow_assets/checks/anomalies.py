"""Anomalies on silver.daily_bars: numbers that are possible but should not happen without news.
Both WARN, and both keep their flagged rows queryable in `ops.anomalies` (each evaluation
replaces its check's rows for the sessions it evaluated).

- `price_jump`: |ln(close / previous close)| above ln(max_daily_move_factor) (default 5x) on a
  day without a split in silver.corporate_actions. Catches 100x price errors (both the jump and
  the return to normal the next day) and splits the provider did not report.
- `volume_spike`: robust z-score of ln(1 + adj_volume) against the ticker's trailing window
  (median and MAD of the previous `volume_window_sessions` bars, at least
  `volume_min_sessions` of them): z = (x - median) / (1.4826 MAD) above `volume_z_threshold`,
  on a day without a split. Adjusted volume, so splits do not look like spikes.

Thresholds come from the `quality` resource (resources/quality.py).
"""

import dagster as dg

from marketflow_assets.checks.framework import WARN, CheckDef, CheckRun, Outcome
from marketflow_assets.contracts import ops as ops_contracts
from marketflow_assets.storage.warehouse import ensure_table

CORPORATE_ACTIONS = dg.AssetKey(["silver", "corporate_actions"])
PRICE_LOOKBACK_SESSIONS = 5  # enough to find the previous bar across a few missing days


def _date(day) -> str:
    return f"DATE '{day.isoformat()}'"


def _in_scope(run: CheckRun, column: str = "session_date") -> str:
    return f"{column} >= {_date(run.scope.start)}" if run.scope.partitioned else "TRUE"


def replace_anomalies(run: CheckRun, check_name: str, metric: str, threshold: float) -> int:
    """Replace this check's rows of ops.anomalies for the evaluated sessions with `_flags`
    (ticker, session_date, value, detail)."""
    contract = ops_contracts.ANOMALIES
    asset = run.suite.asset_key.to_user_string()
    scope = run.scope
    where = "check_name = ? AND asset_key = ?"
    params: list = [check_name, asset]
    if scope.partitioned:
        where += " AND session_date BETWEEN ? AND ?"
        params += [scope.start, scope.end]
    con = run.con
    ensure_table(con, contract)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"DELETE FROM {contract.table} WHERE {where}", params)
        written = con.execute(
            f"""
            INSERT INTO {contract.table} ({", ".join(contract.column_names)})
            SELECT ?, ?, ticker, session_date, ?, value, ?, detail, now(), ?
            FROM _flags
            """,
            [check_name, asset, metric, threshold, run.run_id],
        ).fetchall()[0][0]
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return int(written)


def _no_split_join(alias: str = "b") -> str:
    return (
        f"LEFT JOIN (SELECT ticker, ex_date FROM silver.corporate_actions WHERE split_ratio <> 1) "
        f"ca ON ca.ticker = {alias}.ticker AND ca.ex_date = {alias}.session_date"
    )


def price_jump_check() -> CheckDef:
    def evaluate(run: CheckRun) -> Outcome:
        quality = run.resources.quality
        threshold = quality.max_abs_log_return
        run.con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _flags AS
            WITH bars AS (
                SELECT ticker, session_date, close,
                    lag(close) OVER w AS previous_close,
                    lag(session_date) OVER w AS previous_session
                FROM _slice
                WINDOW w AS (PARTITION BY ticker ORDER BY session_date)
            )
            SELECT b.ticker, b.session_date, b.previous_session, b.previous_close, b.close,
                b.close / b.previous_close AS ratio,
                ln(b.close / b.previous_close) AS value,
                format('close {{:.4f}} vs {{:.4f}} on {{}} (x{{:.4g}}); no split on record',
                    b.close, b.previous_close, b.previous_session, b.close / b.previous_close)
                    AS detail
            FROM bars b {_no_split_join()}
            WHERE {_in_scope(run, "b.session_date")} AND ca.ticker IS NULL
                AND b.previous_close > 0 AND b.close > 0
                AND abs(ln(b.close / b.previous_close)) > {threshold!r}
            """
        )
        written = replace_anomalies(run, "price_jump", "log_return_close", threshold)
        return run.failures(
            "SELECT * FROM _flags",
            ok=f"no one-day move beyond x{quality.max_daily_move_factor:g} without a split",
            failed="{n} one-day move(s) beyond x"
            + f"{quality.max_daily_move_factor:g} without a split on record "
            "({tickers} ticker(s)); see ops.anomalies",
            checked=run.state["scoped_rows"],
            metadata={
                "threshold_abs_log_return": threshold,
                "max_daily_move_factor": quality.max_daily_move_factor,
                "anomalies_written": written,
                "anomalies_table": "ops.anomalies (check_name = 'price_jump')",
            },
        )

    return CheckDef(
        name="price_jump",
        description=(
            "One-day moves of the traded close beyond a factor (default 5x: |ln(close / previous "
            "close)| > ln 5) on a day without a split in silver.corporate_actions: catches 100x "
            "price errors and unreported splits. Failing rows: flagged bars (also in "
            "ops.anomalies). WARN."
        ),
        evaluate=evaluate,
        severity=WARN,
        additional_deps=(CORPORATE_ACTIONS,),
        lookback_sessions=PRICE_LOOKBACK_SESSIONS,
    )


def volume_spike_check() -> CheckDef:
    def evaluate(run: CheckRun) -> Outcome:
        quality = run.resources.quality
        window = int(quality.volume_window_sessions)
        minimum = int(quality.volume_min_sessions)
        threshold = float(quality.volume_z_threshold)
        # Exact median/MAD for every bar is a holistic window over the whole slice (~2 s for
        # 1.26M bars). The 30/50/70% quantiles are one cheaper window, and they bound the MAD
        # from below: at least half the window lies within median +- MAD, and fewer than half
        # lies strictly between the 30% and 70% quantiles, so MAD >= min(q50 - q30, q70 - q50).
        # Only bars beyond that bound can be spikes; their exact median and MAD come from a
        # join with their own trailing window. Same result as the full window, ~2x faster.
        factor = 1.4826 * threshold
        run.con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _flags AS
            WITH q AS MATERIALIZED (
                SELECT ticker, session_date, adj_volume, ln(1 + adj_volume) AS x,
                    quantile_cont(ln(1 + adj_volume), [0.3, 0.5, 0.7]) OVER w AS qs,
                    count(*) OVER w AS n,
                    row_number() OVER (PARTITION BY ticker ORDER BY session_date) AS rn
                FROM _slice WHERE adj_volume >= 0
                WINDOW w AS (PARTITION BY ticker ORDER BY session_date
                    ROWS BETWEEN {window} PRECEDING AND 1 PRECEDING)
            ),
            candidates AS (
                SELECT * FROM q
                WHERE {_in_scope(run)} AND n >= {minimum}
                    AND x - qs[2] > {factor!r} * least(qs[2] - qs[1], qs[3] - qs[2])
            ),
            exact AS (
                SELECT c.ticker, c.session_date, c.adj_volume, c.x, c.n,
                    median(p.x) AS med, mad(p.x) AS mad
                FROM candidates c JOIN q p
                    ON p.ticker = c.ticker AND p.rn BETWEEN c.rn - {window} AND c.rn - 1
                GROUP BY ALL
            )
            SELECT b.ticker, b.session_date, b.adj_volume,
                exp(b.med) - 1 AS median_volume,
                (b.x - b.med) / (1.4826 * b.mad) AS value,
                b.n AS window_bars,
                format('adj_volume {{:.0f}} vs trailing median {{:.0f}} (x{{:.3g}}, robust z {{:.1f}} over {{}} bars)',
                    b.adj_volume, exp(b.med) - 1, (1 + b.adj_volume) / exp(b.med),
                    (b.x - b.med) / (1.4826 * b.mad), b.n) AS detail
            FROM exact b {_no_split_join()}
            WHERE ca.ticker IS NULL AND b.mad > 0
                AND (b.x - b.med) / (1.4826 * b.mad) > {threshold!r}
            """
        )
        written = replace_anomalies(run, "volume_spike", "volume_robust_z", threshold)
        return run.failures(
            "SELECT * FROM _flags",
            ok=f"no volume above robust z {threshold:g} against the trailing {window} sessions",
            failed="{n} volume spike(s) (robust z > " + f"{threshold:g}) on "
            "{tickers} ticker(s); see ops.anomalies",
            checked=run.state["scoped_rows"],
            metadata={
                "threshold_robust_z": threshold,
                "window_sessions": window,
                "min_sessions": minimum,
                "anomalies_written": written,
                "anomalies_table": "ops.anomalies (check_name = 'volume_spike')",
            },
        )

    return CheckDef(
        name="volume_spike",
        description=(
            "Volume spikes: robust z-score of ln(1 + adj_volume) against the ticker's trailing "
            "window (median and MAD of the previous 60 bars by default) above a threshold "
            "(default 8), on a day without a split. Failing rows: flagged bars (also in "
            "ops.anomalies). WARN."
        ),
        evaluate=evaluate,
        severity=WARN,
        additional_deps=(CORPORATE_ACTIONS,),
        lookback_sessions=lambda resources: resources.quality.volume_window_sessions,
    )
