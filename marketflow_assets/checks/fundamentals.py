"""Checks of the fundamentals tables (on top of `contract` and `keys`), in DuckDB SQL over the
suite's slice (`_scoped`):

silver.financial_facts
- `accounting_identity` (ERROR): TotalAssets = TotalLiabilitiesNetMinorityInterest + total
  equity (TotalEquityGrossMinorityInterest, else StockholdersEquity) within 0.5% of assets, for
  every current balance sheet. Failing rows: balance sheets.
gold.fundamentals_daily
- `no_look_ahead` (ERROR): no row uses a fact known after its session (latest_known_at <=
  session_date) or a period not yet ended (latest_period_end < session_date), and every
  latest_known_at is the known_at of a fact version in silver. Failing rows: gold rows.
- `coverage` (WARN): every equity with silver bars in the scope has a fundamentals row with a
  market cap on each such session from its first one on (before a ticker's first statement is
  known there is nothing to have); an equity with none at all fails on every session. Failing
  rows: (ticker, session) pairs, so a range run's sessions without a gap pass.
- `outliers` (WARN): non-positive shares or market cap, P/E above 1,000, P/B above 200, a
  net margin beyond +-10 (1,000%). Failing rows: gold rows. Warnings: such numbers happen (tiny
  earnings, restructurings); they deserve a look, not a stopped pipeline.
"""

from __future__ import annotations

import dagster as dg

from marketflow_assets.checks.framework import ERROR, WARN, CheckDef, CheckRun, Outcome

FACTS = dg.AssetKey(["silver", "financial_facts"])
FUNDAMENTALS = dg.AssetKey(["gold", "fundamentals_daily"])
SILVER_BARS = dg.AssetKey(["silver", "daily_bars"])
IDENTITY_TOLERANCE = 0.005
MAX_PE, MAX_PB, MAX_ABS_MARGIN = 1000.0, 200.0, 10.0


def accounting_identity_check() -> CheckDef:
    def evaluate(run: CheckRun) -> Outcome:
        return run.failures(
            f"""
            WITH sheets AS (
                SELECT ticker, period_type, period_end,
                    max(CASE WHEN line_item = 'TotalAssets' THEN value END) AS assets,
                    max(CASE WHEN line_item = 'TotalLiabilitiesNetMinorityInterest'
                        THEN value END) AS liabilities,
                    coalesce(
                        max(CASE WHEN line_item = 'TotalEquityGrossMinorityInterest'
                            THEN value END),
                        max(CASE WHEN line_item = 'StockholdersEquity' THEN value END)
                    ) AS equity
                FROM _scoped
                WHERE statement = 'balance' AND superseded_at IS NULL
                GROUP BY ALL
            )
            SELECT *, assets - liabilities - equity AS difference FROM sheets
            WHERE abs(assets - liabilities - equity) > {IDENTITY_TOLERANCE} * abs(assets)
            """,
            ok="assets = liabilities + equity (within 0.5%) on every current balance sheet",
            failed="{n} balance sheet(s) on {tickers} ticker(s) break assets = liabilities + "
            "equity by more than 0.5%",
            session=None,
            order="ticker, period_end",
        )

    return CheckDef(
        name="accounting_identity",
        description=(
            "Every current balance sheet (latest version of each number) has TotalAssets = "
            "TotalLiabilitiesNetMinorityInterest + total equity within 0.5% of assets. "
            "Failing rows: balance sheets (ticker, period type, period end)."
        ),
        evaluate=evaluate,
        severity=ERROR,
    )


def no_look_ahead_check() -> CheckDef:
    def evaluate(run: CheckRun) -> Outcome:
        return run.failures(
            """
            SELECT g.ticker, g.session_date, g.latest_period_end, g.latest_known_at,
                CASE
                    WHEN g.latest_known_at > g.session_date THEN 'uses a fact known later'
                    WHEN g.latest_period_end >= g.session_date THEN 'uses a period not ended'
                    ELSE 'latest_known_at matches no fact version'
                END AS violation
            FROM _scoped g
            WHERE g.latest_known_at > g.session_date
                OR g.latest_period_end >= g.session_date
                OR NOT EXISTS (
                    SELECT 1 FROM silver.financial_facts f
                    WHERE f.ticker = g.ticker AND f.known_at = g.latest_known_at)
            """,
            ok="every row uses only facts known on or before its session",
            failed="{n} row(s) on {tickers} ticker(s) use facts not known at their session",
            checked=run.state["scoped_rows"],
        )

    return CheckDef(
        name="no_look_ahead",
        description=(
            "No gold row uses a fact known after its session or a period that had not ended, "
            "and its latest_known_at is a real fact version's. Failing rows: gold rows."
        ),
        evaluate=evaluate,
        severity=ERROR,
        additional_deps=(FACTS,),
    )


def coverage_check() -> CheckDef:
    def evaluate(run: CheckRun) -> Outcome:
        where, params = "TRUE", []
        if run.scope.partitioned:
            where, params = "b.session_date BETWEEN ? AND ?", [run.scope.start, run.scope.end]
        # Failing rows are (ticker, session) pairs, so a range's verdict splits by session
        # (checks/per_session.py): only the sessions with a gap fail.
        return run.failures(
            f"""
            WITH covered_from AS (
                SELECT ticker, min(session_date) AS first_session
                FROM gold.fundamentals_daily WHERE market_cap IS NOT NULL GROUP BY ticker
            )
            SELECT b.ticker, b.session_date, c.first_session AS fundamentals_from
            FROM silver.daily_bars b
            JOIN silver.symbols s ON s.ticker = b.ticker AND s.quote_type = 'EQUITY'
            LEFT JOIN covered_from c ON c.ticker = b.ticker
            LEFT JOIN _scoped g ON g.ticker = b.ticker AND g.session_date = b.session_date
            WHERE {where} AND g.market_cap IS NULL
              AND (c.first_session IS NULL OR b.session_date > c.first_session)
            """,
            params,
            ok="every equity has fundamentals with a market cap on every session it traded "
            "since its first",
            failed="{n} equity session(s) lack fundamentals ({tickers} ticker(s), {sessions} session(s))",
            order="session_date, ticker",
        )

    return CheckDef(
        name="coverage",
        description=(
            "Every equity (silver.symbols) with silver bars in scope has a fundamentals row with "
            "a market cap on each of those sessions from its first such row on (an equity with "
            "none fails everywhere). Failing rows: (ticker, session) pairs. WARN: a provider without statements for a ticker is not a "
            "pipeline error."
        ),
        evaluate=evaluate,
        severity=WARN,
        additional_deps=(SILVER_BARS, dg.AssetKey(["silver", "symbols"])),
    )


def outliers_check() -> CheckDef:
    def evaluate(run: CheckRun) -> Outcome:
        return run.failures(
            f"""
            SELECT ticker, session_date, shares_outstanding, market_cap, pe_ttm, pb,
                net_margin_ttm,
                concat_ws('; ',
                    CASE WHEN shares_outstanding <= 0 THEN 'shares not positive' END,
                    CASE WHEN market_cap <= 0 THEN 'market cap not positive' END,
                    CASE WHEN pe_ttm > {MAX_PE} THEN 'P/E above {MAX_PE:g}' END,
                    CASE WHEN pb > {MAX_PB} THEN 'P/B above {MAX_PB:g}' END,
                    CASE WHEN abs(net_margin_ttm) > {MAX_ABS_MARGIN}
                        THEN 'net margin beyond +-{MAX_ABS_MARGIN:g}' END
                ) AS outlier
            FROM _scoped
            WHERE shares_outstanding <= 0 OR market_cap <= 0 OR pe_ttm > {MAX_PE}
                OR pb > {MAX_PB} OR abs(net_margin_ttm) > {MAX_ABS_MARGIN}
            """,
            ok="no implausible shares, market caps, P/E, P/B or margins",
            failed="{n} row(s) on {tickers} ticker(s) with implausible fundamentals",
            checked=run.state["scoped_rows"],
        )

    return CheckDef(
        name="outliers",
        description=(
            f"Non-positive shares or market cap, P/E above {MAX_PE:g}, P/B above {MAX_PB:g}, or "
            f"|net margin| above {MAX_ABS_MARGIN:g}. Failing rows: gold rows. WARN."
        ),
        evaluate=evaluate,
        severity=WARN,
    )


def fundamentals_checks() -> dict[dg.AssetKey, tuple[CheckDef, ...]]:
    return {
        FACTS: (accounting_identity_check(),),
        FUNDAMENTALS: (no_look_ahead_check(), coverage_check(), outliers_check()),
    }
