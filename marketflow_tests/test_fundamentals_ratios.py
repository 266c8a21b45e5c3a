"""The ratio definitions (gold.fundamentals_daily's contract) against a hand-computed example
from a real published statement, run through the gold SQL itself.

Source: Apple Inc., Form 10-K for the fiscal year ended 2023-09-30 (filed with the SEC on
2023-11-03; https://www.sec.gov/cgi-bin/browse-edgar?action=getcompany&CIK=0000320193&type=10-K),
in millions of USD unless noted:
  income statement FY2023: net sales 383,285; cost of sales 214,137; gross margin 169,148;
    operating income 114,301; net income 96,995
  balance sheet 2023-09-30 (2022-09-24): total assets 352,583 (352,755); total liabilities
    290,437 (302,083); shareholders' equity 62,146 (50,672); total current assets 143,566;
    total current liabilities 145,308; cash and cash equivalents 29,965; commercial paper 5,985,
    term debt current 9,822 and non-current 95,281 (total debt 111,088); shares outstanding
    15,550,061 thousand
  cash flow FY2023: operating cash flow 110,543; payments for property, plant and equipment
    10,959; depreciation and amortization 11,519
  dividends per share (ex-dates): 0.23 (2022-11-04), 0.23 (2023-02-10), 0.24 (2023-05-12),
    0.24 (2023-08-11)
Apple's earnings release for FY2023 was 2023-11-02 after the close, so the facts are known from
2023-11-03. The session close is an illustration price of $180.00 (not a quote): ratios scale
with it in the obvious way.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd
import pytest

from marketflow_assets.contracts.fundamentals import FINANCIAL_FACTS, FUNDAMENTALS_DAILY
from marketflow_assets.contracts.silver import CORPORATE_ACTIONS, DAILY_BARS
from marketflow_assets.transforms.fundamentals import GOLD_FUNDAMENTALS_SQL

M = 1e6
FY23, FY22 = dt.date(2023, 9, 30), dt.date(2022, 9, 24)
KNOWN = dt.date(2023, 11, 3)
SESSION = dt.date(2023, 11, 6)
CLOSE = 180.00
FACTS = [
    # (statement, period_end, line_item, value)
    ("income", FY23, "TotalRevenue", 383_285 * M),
    ("income", FY23, "GrossProfit", 169_148 * M),
    ("income", FY23, "OperatingIncome", 114_301 * M),
    ("income", FY23, "NetIncome", 96_995 * M),
    ("income", FY23, "ReconciledDepreciation", 11_519 * M),
    ("balance", FY23, "TotalAssets", 352_583 * M),
    ("balance", FY23, "TotalLiabilitiesNetMinorityInterest", 290_437 * M),
    ("balance", FY23, "StockholdersEquity", 62_146 * M),
    ("balance", FY23, "CurrentAssets", 143_566 * M),
    ("balance", FY23, "CurrentLiabilities", 145_308 * M),
    ("balance", FY23, "CashAndCashEquivalents", 29_965 * M),
    ("balance", FY23, "TotalDebt", (5_985 + 9_822 + 95_281) * M),
    ("balance", FY23, "OrdinarySharesNumber", 15_550_061_000),
    ("balance", FY22, "TotalAssets", 352_755 * M),
    ("balance", FY22, "StockholdersEquity", 50_672 * M),
    ("cashflow", FY23, "OperatingCashFlow", 110_543 * M),
    ("cashflow", FY23, "CapitalExpenditure", -10_959 * M),
]
DIVIDENDS = [("2022-11-04", 0.23), ("2023-02-10", 0.23), ("2023-05-12", 0.24), ("2023-08-11", 0.24)]

# By hand (Apple's numbers above, $180 close):
SHARES = 15_550_061_000
MARKET_CAP = 180.00 * 15_550_061_000  # 2,799,010,980,000
EXPECTED = {
    "shares_outstanding": SHARES,
    "market_cap": MARKET_CAP,
    "pe_ttm": MARKET_CAP / 96_995e6,  # 28.857
    "pb": MARKET_CAP / 62_146e6,  # 45.039
    "ps_ttm": MARKET_CAP / 383_285e6,  # 7.3027
    "ev_ebitda_ttm": (MARKET_CAP + 111_088e6 - 29_965e6) / (114_301e6 + 11_519e6),  # 22.891
    "roe_ttm": 96_995e6 / ((62_146e6 + 50_672e6) / 2),  # 1.7195
    "roa_ttm": 96_995e6 / ((352_583e6 + 352_755e6) / 2),  # 0.27504
    "gross_margin_ttm": 169_148 / 383_285,  # 0.44131
    "operating_margin_ttm": 114_301 / 383_285,  # 0.29821
    "net_margin_ttm": 96_995 / 383_285,  # 0.25306
    "debt_to_equity": 111_088 / 62_146,  # 1.7875
    "current_ratio": 143_566 / 145_308,  # 0.98801
    "fcf_ttm": (110_543 - 10_959) * M,  # 99,584 M
    "fcf_yield": (110_543 - 10_959) * M / MARKET_CAP,  # 0.035578
    # Ex-dates in (2022-11-06, 2023-11-06]: 0.23 + 0.24 + 0.24 (2022-11-04 is 367 days before)
    "dividend_yield_ttm": (0.23 + 0.24 + 0.24) / 180.00,  # 0.0039444
}


def warehouse(facts=FACTS, splits=()) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for contract in (FINANCIAL_FACTS, DAILY_BARS, CORPORATE_ACTIONS):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {contract.schema}")
        con.execute(contract.ddl())
    rows = pd.DataFrame(
        [
            {
                "ticker": "AAPL",
                "statement": statement,
                "period_type": "annual",
                "period_end": end,
                "line_item": item,
                "value": value,
                "currency": "USD",
                "version": 1,
                "known_at": KNOWN,
                "known_at_rule": "earnings_date+1d",
                "first_seen_at": pd.Timestamp("2024-01-02", tz="UTC"),
                "superseded_at": None,
                "form": None,
                "source": "test",
                "fetch_id": "f1",
            }
            for statement, end, item, value in facts
        ]
    )
    con.register("facts", rows)
    con.execute("INSERT INTO silver.financial_facts SELECT * FROM facts")
    con.execute(
        "INSERT INTO silver.daily_bars (ticker, session_date, open, high, low, close, volume, "
        "adj_open, adj_high, adj_low, adj_close, adj_volume, dividend, split_ratio, source, "
        "fetched_at) VALUES ('AAPL', ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, 1, 0, 1, 'test', now())",
        [SESSION, *[CLOSE] * 8],
    )
    actions = [(d, amount, 1.0) for d, amount in DIVIDENDS] + list(splits)
    for day, dividend, ratio in actions:
        con.execute(
            "INSERT INTO silver.corporate_actions (ticker, ex_date, dividend, split_ratio, "
            "dividend_factor, first_seen_at, last_seen_at, source) "
            "VALUES ('AAPL', ?, ?, ?, 0.999, now(), now(), 'test')",
            [day, dividend, ratio],
        )
    return con


def gold(con, session=SESSION) -> pd.DataFrame:
    params = {"start": session, "end": session, "tickers": None}
    return con.execute(GOLD_FUNDAMENTALS_SQL, params).df()


def test_ratios_match_apples_fiscal_2023_by_hand():
    (row,) = gold(warehouse()).to_dict("records")

    assert list(row) == FUNDAMENTALS_DAILY.column_names
    for name, value in EXPECTED.items():
        assert row[name] == pytest.approx(value, rel=1e-12), name
    assert row["latest_period_end"] == pd.Timestamp(FY23)
    assert row["latest_known_at"] == pd.Timestamp(KNOWN)


def test_nothing_before_the_release_is_known():
    assert gold(warehouse(), session=dt.date(2023, 11, 2)).empty


def test_a_split_after_the_period_end_rebases_shares_and_dividends():
    """A made-up 4:1 split on 2023-10-02 (after the 2023-09-30 balance sheet): the session's
    close is post-split, so shares x 4, and earlier dividends / 4 per current share."""
    (row,) = gold(warehouse(splits=[("2023-10-02", 0.0, 4.0)])).to_dict("records")

    assert row["shares_outstanding"] == SHARES * 4
    assert row["pe_ttm"] == pytest.approx(EXPECTED["pe_ttm"] * 4, rel=1e-12)
    assert row["dividend_yield_ttm"] == pytest.approx(0.71 / 4 / 180.0, rel=1e-12)


def test_losses_and_negative_equity_give_null_ratios_not_nonsense():
    facts = [
        (s, e, i, -v if i in ("NetIncome", "StockholdersEquity") and e == FY23 else v)
        for s, e, i, v in FACTS
    ]
    (row,) = gold(warehouse(facts)).to_dict("records")

    assert pd.isna(row["pe_ttm"]) and pd.isna(row["pb"]) and pd.isna(row["debt_to_equity"])
    assert row["net_margin_ttm"] == pytest.approx(-96_995 / 383_285)


def test_a_later_share_count_replaces_the_balance_sheet_count_once_known():
    """yfinance's shares history: Apple's count of 15,552,752,000 as of 2023-10-20 (its 10-K cover
    page) is known from 2023-10-20 + 30 days; before that the balance sheet's count serves. A
    made-up 4:1 split on 2023-11-13, after the count, multiplies it by 4."""
    con = warehouse(splits=[("2023-11-13", 0.0, 4.0)])
    count_day, count_known, later = (
        dt.date(2023, 10, 20),
        dt.date(2023, 11, 19),
        dt.date(2023, 11, 20),
    )
    con.execute(
        "INSERT INTO silver.financial_facts SELECT * REPLACE ('shares' AS statement, "
        "'instant' AS period_type, ?::DATE AS period_end, 'SharesOutstanding' AS line_item, "
        "15552752000 AS value, ?::DATE AS known_at, 'as_of+30d' AS known_at_rule) "
        "FROM silver.financial_facts WHERE line_item = 'TotalRevenue'",
        [count_day, count_known],
    )
    con.execute(
        "INSERT INTO silver.daily_bars SELECT * REPLACE (?::DATE AS session_date) "
        "FROM silver.daily_bars",
        [later],
    )

    (before,) = gold(con).to_dict("records")
    (after,) = gold(con, session=later).to_dict("records")

    assert before["shares_outstanding"] == SHARES  # the count is not known on 2023-11-06
    assert before["latest_known_at"] == pd.Timestamp(KNOWN)
    assert after["shares_outstanding"] == 15_552_752_000 * 4
    assert after["market_cap"] == pytest.approx(180.0 * 15_552_752_000 * 4, rel=1e-12)
    assert after["latest_known_at"] == pd.Timestamp(count_known)
