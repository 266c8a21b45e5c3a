"""Fundamentals contracts: statement rows (bronze), versioned facts (silver), point-in-time ratios
(gold). The ratio definitions live here, once: the gold SQL (`transforms/fundamentals.py`)
implements exactly these texts, and the README's table reference prints them.
"""

from __future__ import annotations

import pandera.pandas as pa

from marketflow_assets.contracts.bronze import LINEAGE
from marketflow_assets.contracts.model import Col, TableContract

# What a statement row may say (sources, CSV files, drops) ...
REPORTED_STATEMENTS = ("income", "balance", "cashflow")
REPORTED_PERIOD_TYPES = ("annual", "quarterly")
# ... plus `shares`/`instant`: dated share counts (yfinance's shares history), not a statement.
STATEMENTS = (*REPORTED_STATEMENTS, "shares")
PERIOD_TYPES = (*REPORTED_PERIOD_TYPES, "instant")
# How `known_at` was decided (silver.financial_facts.known_at_rule).
KNOWN_AT_RULES = (
    "earnings_date+1d",  # the provider's earnings-release date for the period, plus one day
    "sec_filed+1d",  # the SEC filing date (EDGAR `filed`), plus one day
    "sec_filing+1d",  # no earnings date: the first 10-K/10-Q Yahoo lists after the period end
    "reported+1d",  # a date given by a CSV/file drop (`reported_at`), plus one day
    "period_end+45d",  # no date known: quarterly period end + 45 days
    "period_end+90d",  # no date known: annual period end + 90 days
    "as_of+30d",  # a dated share count: its as-of date + 30 days
    "first_seen",  # a restated value a later fetch showed, with no date of its own
)
# A number announced or filed on day D may come after D's close: it is used from D + 1 day.
REPORT_LAG_DAYS = 1
# No announcement or filing date: SEC deadlines for large accelerated filers are 40 days after a
# quarter (10-Q) and 60 after a fiscal year (10-K); these lags are later than both, so a ratio
# never uses a number before it was public.
PERIOD_END_LAG_DAYS = {"quarterly": 45, "annual": 90}
# A share count is dated by the day it was counted (a filing's cover page), which precedes the
# filing by two to three weeks: it is used from that date + 30 days.
SHARES_LAG_DAYS = 30

NON_NEGATIVE = pa.Check.ge(0, error="non-negative")

# The columns that name a reported number, in bronze and silver alike.
FACT_KEY_COLUMNS = (
    Col("ticker", "VARCHAR", "Yahoo symbol."),
    Col(
        "statement",
        "VARCHAR",
        "income, balance or cashflow; shares for a dated share count.",
        checks=(pa.Check.isin(STATEMENTS),),
    ),
    Col(
        "period_type",
        "VARCHAR",
        "annual, quarterly; instant (share counts).",
        checks=(pa.Check.isin(PERIOD_TYPES),),
    ),
    Col("period_end", "DATE", "Last day of the fiscal period; a share count's as-of date."),
    Col("line_item", "VARCHAR", "Line item, Yahoo's name (TotalRevenue, NetIncome, ...)."),
)

BRONZE_FINANCIAL_STATEMENTS = TableContract(
    table="bronze.financial_statements",
    description=(
        "Every statement number of every fetch, typed into long rows (one per ticker, statement, "
        "period type, period end, line item, report and fetch); line items keep the provider's "
        "names (Yahoo's, e.g. TotalRevenue; EDGAR us-gaap tags mapped to them). Nothing filtered."
    ),
    columns=(
        *FACT_KEY_COLUMNS,
        Col(
            "value", "DOUBLE", "Reported value in `currency` units (not thousands); capex negative."
        ),
        Col(
            "currency", "VARCHAR", "Reporting currency, where the payload gives it.", nullable=True
        ),
        Col(
            "reported_at",
            "DATE",
            "When the number was made public, where the payload says so: the earnings-release "
            "date (yfinance, simulator), the filing date (EDGAR), `reported_at` (CSV).",
            nullable=True,
        ),
        Col(
            "reported_via",
            "VARCHAR",
            "What `reported_at` is: earnings_date, sec_filed, sec_filing or reported; NULL "
            "without a date.",
            nullable=True,
        ),
        Col("form", "VARCHAR", "SEC form of the report (10-Q, 10-K, 10-K/A, ...).", nullable=True),
        Col("accession", "VARCHAR", "SEC accession number of the report.", nullable=True),
        *LINEAGE,
    ),
    key=("ticker", "statement", "period_type", "period_end", "line_item", "fetch_id"),
    key_unique=False,
    partition_column=None,
)

FINANCIAL_FACTS = TableContract(
    table="silver.financial_facts",
    description=(
        "Bitemporal statement facts: one row per version of a reported number. A value that "
        "differs from the previous fetch (a restatement, or an amended filing) closes the old "
        "version (`superseded_at`) and opens a new one; nothing is overwritten. Point in time "
        "as of day S: per fact, the version with the latest `known_at` on or before S."
    ),
    columns=(
        *FACT_KEY_COLUMNS,
        Col("value", "DOUBLE", "The value of this version."),
        Col("currency", "VARCHAR", "Reporting currency.", nullable=True),
        Col(
            "version",
            "INTEGER",
            "1 for the first value seen, +1 per change.",
            checks=(pa.Check.ge(1),),
        ),
        Col(
            "known_at",
            "DATE",
            "First day the market could use this version: the day after its announcement or "
            "filing; else period end + 45 days (quarterly) or + 90 days (annual); a restated "
            "value without a date of its own: the day a fetch first showed it.",
        ),
        Col(
            "known_at_rule",
            "VARCHAR",
            "How known_at was decided (earnings_date+1d, sec_filed+1d, sec_filing+1d, "
            "reported+1d, period_end+45d, period_end+90d, as_of+30d, first_seen).",
            checks=(pa.Check.isin(KNOWN_AT_RULES),),
        ),
        Col(
            "first_seen_at",
            "TIMESTAMPTZ",
            "Provider clock of the first fetch showing this version.",
        ),
        Col(
            "superseded_at",
            "TIMESTAMPTZ",
            "Provider clock of the first fetch showing the next version; NULL while current.",
            nullable=True,
        ),
        Col("form", "VARCHAR", "SEC form of the report this version came from.", nullable=True),
        Col("source", "VARCHAR", "Source that reported it."),
        Col("fetch_id", "VARCHAR", "Raw fetch that first showed this version."),
    ),
    key=("ticker", "statement", "period_type", "period_end", "line_item", "version"),
    partition_column=None,
)

_TTM = (
    "TTM = the sum of the last four fiscal quarters known (a missing fiscal Q4 is the annual "
    "figure minus the three other quarters; without quarters, the latest annual figure)"
)
_LATEST = "latest balance sheet known (quarterly or annual, the later period end)"
_AVG = "average of the latest and the year-earlier balance (period ends 330-400 days apart)"


def _ratio(name: str, definition: str, *checks: pa.Check) -> Col:
    return Col(name, "DOUBLE", definition, nullable=True, checks=checks)


FUNDAMENTALS_DAILY = TableContract(
    table="gold.fundamentals_daily",
    description=(
        "Point-in-time fundamentals per ticker and session: each row uses only fact versions "
        "with known_at on or before the session (as of that day, never a later restatement), "
        "the session's traded close, and shares adjusted for splits since their period end. "
        f"{_TTM}. Ratios are NULL where an input is missing or a denominator is not positive; "
        "a ticker with no statement known on a session (an index, a fund) has no row."
    ),
    columns=(
        Col("ticker", "VARCHAR", "Yahoo symbol."),
        Col("session_date", "DATE", "NYSE session."),
        _ratio(
            "shares_outstanding",
            "The later-dated of the latest share count known (SharesOutstanding, yfinance's "
            "shares history) and OrdinarySharesNumber of the latest balance sheet known, times "
            "every split ratio with ex-date after its date and on or before the session.",
        ),
        _ratio("market_cap", "Traded close of the session x shares_outstanding."),
        _ratio("pe_ttm", "market_cap / NetIncome TTM; NULL when NetIncome TTM <= 0."),
        _ratio("pb", f"market_cap / StockholdersEquity ({_LATEST}); NULL when equity <= 0."),
        _ratio("ps_ttm", "market_cap / TotalRevenue TTM; NULL when revenue <= 0."),
        _ratio(
            "ev_ebitda_ttm",
            "(market_cap + TotalDebt - CashAndCashEquivalents, latest balance) / EBITDA TTM "
            "(EBITDA, else OperatingIncome + ReconciledDepreciation); NULL when EBITDA <= 0.",
        ),
        _ratio("roe_ttm", f"NetIncome TTM / StockholdersEquity ({_AVG}); NULL when it is <= 0."),
        _ratio("roa_ttm", f"NetIncome TTM / TotalAssets ({_AVG}); NULL when it is <= 0."),
        _ratio("gross_margin_ttm", "GrossProfit TTM / TotalRevenue TTM."),
        _ratio("operating_margin_ttm", "OperatingIncome TTM / TotalRevenue TTM."),
        _ratio("net_margin_ttm", "NetIncome TTM / TotalRevenue TTM."),
        _ratio(
            "debt_to_equity",
            f"TotalDebt / StockholdersEquity ({_LATEST}); NULL when equity <= 0.",
        ),
        _ratio(
            "current_ratio",
            f"CurrentAssets / CurrentLiabilities ({_LATEST}).",
            NON_NEGATIVE,
        ),
        _ratio(
            "fcf_ttm",
            "OperatingCashFlow TTM + CapitalExpenditure TTM (capex negative, as Yahoo gives it).",
        ),
        _ratio("fcf_yield", "fcf_ttm / market_cap."),
        _ratio(
            "dividend_yield_ttm",
            "Cash dividends per share with ex-date in the 365 days up to the session (silver bars, "
            "re-based to the session's shares for splits since) / the session's traded close.",
            NON_NEGATIVE,
        ),
        Col(
            "latest_period_end",
            "DATE",
            "Latest period end among the facts used.",
            nullable=True,
        ),
        Col(
            "latest_known_at",
            "DATE",
            "Latest known_at among the facts used, the share count included (never after "
            "session_date).",
            nullable=True,
        ),
    ),
    key=("ticker", "session_date"),
)
