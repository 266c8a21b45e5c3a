"""Fundamentals transforms: statement documents -> bronze rows, bronze -> bitemporal silver facts
(SQL), silver facts + silver bars -> point-in-time gold ratios (SQL).

The definitions are the contracts' (`contracts/fundamentals.py`); this module implements them.
"""

from __future__ import annotations

import contextlib
import itertools
import json

import numpy as np
import pandas as pd

from marketflow_assets.calendar import EXCHANGE_TZ
from marketflow_assets.contracts.fundamentals import (
    BRONZE_FINANCIAL_STATEMENTS,
    PERIOD_END_LAG_DAYS,
    REPORT_LAG_DAYS,
    REPORTED_PERIOD_TYPES,
    REPORTED_STATEMENTS,
    SHARES_LAG_DAYS,
)
from marketflow_assets.sources.fundamentals import (
    EDGAR_FORMAT,
    LONG_COLUMNS,
    LONG_FORMAT,
    YAHOO_FORMAT,
)

# An earnings release (or a 10-K/10-Q filing) answers for the latest period that ended before
# it, within this window.
RELEASE_WINDOW_DAYS = 120
# The SEC forms whose filing dates answer for a period of each type (a fiscal Q4 is first
# reported in the 10-K).
FILING_FORMS = {"annual": ("10-K", "20-F", "40-F"), "quarterly": ("10-Q", "10-K")}
SHARES_ITEM = "SharesOutstanding"
# EDGAR us-gaap tags -> (statement, Yahoo line item, sign). Earlier tags of one item win.
EDGAR_TAGS = {
    "RevenueFromContractWithCustomerExcludingAssessedTax": ("income", "TotalRevenue", 1),
    "Revenues": ("income", "TotalRevenue", 1),
    "SalesRevenueNet": ("income", "TotalRevenue", 1),
    "CostOfGoodsAndServicesSold": ("income", "CostOfRevenue", 1),
    "CostOfRevenue": ("income", "CostOfRevenue", 1),
    "GrossProfit": ("income", "GrossProfit", 1),
    "OperatingIncomeLoss": ("income", "OperatingIncome", 1),
    "NetIncomeLoss": ("income", "NetIncome", 1),
    "DepreciationDepletionAndAmortization": ("income", "ReconciledDepreciation", 1),
    "DepreciationAndAmortization": ("income", "ReconciledDepreciation", 1),
    "WeightedAverageNumberOfDilutedSharesOutstanding": ("income", "DilutedAverageShares", 1),
    "Assets": ("balance", "TotalAssets", 1),
    "Liabilities": ("balance", "TotalLiabilitiesNetMinorityInterest", 1),
    "StockholdersEquity": ("balance", "StockholdersEquity", 1),
    "StockholdersEquityIncludingPortionAttributableToNoncontrollingInterest": (
        "balance",
        "TotalEquityGrossMinorityInterest",
        1,
    ),
    "AssetsCurrent": ("balance", "CurrentAssets", 1),
    "LiabilitiesCurrent": ("balance", "CurrentLiabilities", 1),
    "CashAndCashEquivalentsAtCarryingValue": ("balance", "CashAndCashEquivalents", 1),
    "LongTermDebt": ("balance", "TotalDebt", 1),
    "CommonStockSharesOutstanding": ("balance", "OrdinarySharesNumber", 1),
    "NetCashProvidedByUsedInOperatingActivities": ("cashflow", "OperatingCashFlow", 1),
    # EDGAR reports payments as positive amounts; Yahoo (and our ratios) as negative cash flows.
    "PaymentsToAcquirePropertyPlantAndEquipment": ("cashflow", "CapitalExpenditure", -1),
    "PaymentsOfDividends": ("cashflow", "CashDividendsPaid", -1),
    "PaymentsOfDividendsCommonStock": ("cashflow", "CashDividendsPaid", -1),
}
# Duration facts: a quarter is 80-100 days long, a fiscal year 350-380 (others are year-to-date).
QUARTER_DAYS, YEAR_DAYS = (80, 100), (350, 380)


class StatementFormatError(ValueError):
    """A statements document that cannot be read; the message names the ticker and fetch."""


# -- bronze ------------------------------------------------------------------------------------
def statement_rows(records: pd.DataFrame) -> pd.DataFrame:
    """Bronze rows from raw statement documents: one row per (ticker, record JSON, lineage).

    Yahoo documents (one per ticker and fetch, the bulk of a history run) are flattened and
    typed together in one pandas pass (`_yahoo_rows`), so are EDGAR's (`_edgar_rows`); files of
    the long format are checked one by one (their errors name the row). A document that cannot be read fails the whole batch, naming its ticker, fetch
    and raw object."""
    docs = records.reset_index(drop=True)
    parsed: list[dict] = []
    kinds: list[str] = []
    for doc, text in enumerate(docs["record"]):
        with _naming(docs, doc):
            record = json.loads(text)
            kind = record.get("format") if "facts" not in record else EDGAR_FORMAT
            if kind not in (YAHOO_FORMAT, EDGAR_FORMAT, LONG_FORMAT):
                raise StatementFormatError(f"unknown statements format {kind!r}")
        parsed.append(record)
        kinds.append(kind)
    parts = []
    for kind, reader in ((YAHOO_FORMAT, _yahoo_rows), (EDGAR_FORMAT, _edgar_rows)):
        owners = [doc for doc, k in enumerate(kinds) if k == kind]
        if owners:
            parts.append(reader(docs, owners, [parsed[d] for d in owners]))
    for doc, kind in enumerate(kinds):  # files of the long format: checked row by row
        if kind == LONG_FORMAT:
            with _naming(docs, doc):
                parts.append(_long_rows(parsed[doc]).assign(_doc=doc))
    columns = BRONZE_FINANCIAL_STATEMENTS.column_names
    if not parts:
        return pd.DataFrame(columns=columns)
    rows = pd.concat(parts, ignore_index=True).sort_values("_doc", kind="stable")
    doc = rows.pop("_doc").to_numpy()
    lineage = {
        "ticker": "ticker",
        "source": "_source",
        "fetch_id": "_fetch_id",
        "fetched_at": "_fetched_at",
        "raw_object": "_object_key",
    }
    for column, origin in lineage.items():
        rows[column] = docs[origin].to_numpy()[doc]
    rows["period_end"] = pd.to_datetime(rows["period_end"])
    rows["reported_at"] = pd.to_datetime(rows["reported_at"])
    rows["value"] = rows["value"].astype(float)
    rows["fetched_at"] = pd.to_datetime(rows["fetched_at"], utc=True)
    return rows[rows["value"].notna()][columns].reset_index(drop=True)


@contextlib.contextmanager
def _naming(docs: pd.DataFrame, doc: int):
    """Re-raise a reading error of document `doc` as a StatementFormatError naming it."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _unreadable(docs, doc, f"{type(exc).__name__}: {exc}") from exc


def _unreadable(docs: pd.DataFrame, doc: int, why: str) -> StatementFormatError:
    return StatementFormatError(
        f"{docs.at[doc, 'ticker']}: statements of fetch {docs.at[doc, '_fetch_id']} "
        f"({docs.at[doc, '_object_key']}) are unreadable: {why}"
    )


def _yahoo_values(record: dict) -> list[tuple]:
    """(statement, period_type, period_end, line_item, value) of one document's tables
    ({period_end: {item: value}}), in document order; missing values left out."""
    return [
        (statement, period_type, end, item, value)
        for statement in REPORTED_STATEMENTS
        for period_type in REPORTED_PERIOD_TYPES
        for end, items in record.get(statement, {}).get(period_type, {}).items()
        for item, value in items.items()
        if value is not None
    ]


def _first_bad(parsed: pd.Series, given: pd.Series) -> int | None:
    """Position of the first cell that was given but did not parse (None if every one did)."""
    bad = np.flatnonzero((parsed.isna() & given.notna()).to_numpy())
    return int(bad[0]) if bad.size else None


def _parsed(
    docs: pd.DataFrame, owners: np.ndarray, cells: pd.Series, what: str, parse
) -> pd.Series:
    """`parse(cells)` with errors coerced; a cell that does not parse fails its document."""
    out = parse(cells)
    bad = _first_bad(out, cells)
    if bad is not None:
        raise _unreadable(docs, int(owners[bad]), f"{what} {cells.iloc[bad]!r} does not parse")
    return out


def _dates(cells: pd.Series) -> pd.Series:
    return pd.to_datetime(cells, format="mixed", errors="coerce").astype("datetime64[ns]")


def _yahoo_rows(docs: pd.DataFrame, owners: list[int], records: list[dict]) -> pd.DataFrame:
    """yfinance's tables of every Yahoo document, stacked in one frame (`_doc`: the document);
    each period gets the first earnings release of its document after its end (within
    RELEASE_WINDOW_DAYS) as `reported_at`, else the first matching SEC filing Yahoo lists; plus
    the share counts (`shares`) as `instant` rows."""
    values, value_doc = [], []
    releases, release_doc = [], []
    filings, filing_doc = [], []
    shares, share_doc = [], []
    for doc, record in zip(owners, records, strict=True):  # flatten, per document
        with _naming(docs, doc):
            found = _yahoo_values(record)
            dates = list(record.get("earnings_dates", []))
            listed = [(f["date"], f["form"]) for f in record.get("sec_filings", [])]
            counts = list((record.get("shares") or {}).items())
        values += found
        value_doc += [doc] * len(found)
        releases += dates
        release_doc += [doc] * len(dates)
        filings += listed
        filing_doc += [doc] * len(listed)
        shares += counts
        share_doc += [doc] * len(counts)
    value_doc, release_doc = np.asarray(value_doc, int), np.asarray(release_doc, int)
    filing_doc, share_doc = np.asarray(filing_doc, int), np.asarray(share_doc, int)

    rows = pd.DataFrame(
        values, columns=["statement", "period_type", "period_end", "line_item", "value"]
    )
    rows["_doc"] = value_doc
    rows["value"] = _parsed(docs, value_doc, rows["value"], "value", _numbers)
    rows = rows[rows["value"].notna()]
    rows["period_end"] = _parsed(
        docs, rows["_doc"].to_numpy(), rows["period_end"], "period end", _dates
    )
    rows = rows.sort_values("period_end", kind="stable")

    stamps = pd.Series(releases, dtype=object)
    released = _parsed(
        docs,
        release_doc,
        stamps,
        "earnings date",
        lambda s: pd.to_datetime(s, utc=True, format="mixed", errors="coerce"),
    )
    calendar = pd.DataFrame(
        {
            "_doc": release_doc,
            "release": released.dt.tz_convert(EXCHANGE_TZ)
            .dt.tz_localize(None)
            .dt.normalize()
            .astype("datetime64[ns]"),
        }
    ).drop_duplicates()
    rows = _first_after(rows, calendar, "release", by="_doc")

    listed = pd.DataFrame(filings, columns=["date", "form"], dtype=object)
    listed["_doc"] = filing_doc
    listed["filed"] = _parsed(docs, filing_doc, listed["date"], "filing date", _dates)
    listed = pd.concat(
        [
            listed[listed["form"].isin(forms)].assign(period_type=period_type)
            for period_type, forms in FILING_FORMS.items()
        ]
    )
    rows = _first_after(rows, listed.drop(columns="date"), "filed", by=["_doc", "period_type"])

    currency = pd.Series([r.get("currency") for r in records], index=owners, dtype=object)
    by_release = rows["release"].notna()
    by_filing = ~by_release & rows["filed"].notna()
    statements = rows.assign(
        currency=currency.reindex(rows["_doc"]).to_numpy(),
        reported_at=rows["release"].where(by_release, rows["filed"]),
        reported_via=np.select(
            [by_release, by_filing], ["earnings_date", "sec_filing"], default=None
        ),
        form=rows["form"].where(by_filing, None),
        accession=None,
    )[[*STATEMENT_NUMBER_COLUMNS, "_doc"]]
    counted = pd.DataFrame(shares, columns=["period_end", "value"], dtype=object)
    counts = pd.DataFrame(
        {
            "statement": "shares",
            "period_type": "instant",
            "period_end": _parsed(
                docs, share_doc, counted["period_end"], "share count date", _dates
            ),
            "line_item": SHARES_ITEM,
            "value": _parsed(docs, share_doc, counted["value"], "share count", _numbers),
            "currency": None,
            "reported_at": pd.NaT,
            "reported_via": None,
            "form": None,
            "accession": None,
            "_doc": share_doc,
        }
    )
    # per document: its statements by period end, then its share counts
    both = pd.concat([statements, counts], ignore_index=True) if len(counts) else statements
    return both.sort_values("_doc", kind="stable")


def _numbers(cells: pd.Series) -> pd.Series:
    return pd.to_numeric(cells, errors="coerce").astype(float)


def _first_after(
    rows: pd.DataFrame, dates: pd.DataFrame, column: str, by: str | list[str] | None = None
) -> pd.DataFrame:
    """`rows` (sorted by period_end) with the columns of the first row of `dates` whose
    `column` is after the period end, within RELEASE_WINDOW_DAYS (NaT/NaN where none)."""
    return pd.merge_asof(
        rows,
        dates.sort_values(column, kind="stable"),
        left_on="period_end",
        right_on=column,
        by=by,
        direction="forward",
        allow_exact_matches=False,
        tolerance=pd.Timedelta(days=RELEASE_WINDOW_DAYS),
    )


def _edgar_rows(docs: pd.DataFrame, owners: list[int], records: list[dict]) -> pd.DataFrame:
    """companyfacts -> rows of the mapped us-gaap tags: quarters and fiscal years of duration
    facts (year-to-date spans are left out), every instant fact; one row per filing. Every
    document's facts are stacked into one frame (`_doc`: the document) and typed at once."""
    lists, meta = [], []
    for doc, record in zip(owners, records, strict=True):  # per document: its tags and units
        with _naming(docs, doc):
            facts = record["facts"].get("us-gaap", {})
            for priority, (tag, (statement, item, sign)) in enumerate(EDGAR_TAGS.items()):
                if tag not in facts:
                    continue
                for unit, values in facts[tag]["units"].items():
                    if not isinstance(values, list) or not all(isinstance(v, dict) for v in values):
                        raise TypeError(f"{tag} {unit}: facts are not a list of objects")
                    lists.append(values)
                    meta.append((doc, statement, item, sign, unit, priority))
    if not lists:
        return _empty_long().assign(_doc=pd.Series(dtype=int))
    lengths = [len(values) for values in lists]
    rows = pd.DataFrame.from_records(itertools.chain.from_iterable(lists))
    doc, statement, item, sign, unit, priority = (
        np.repeat(np.asarray(column, dtype=object), lengths) for column in zip(*meta, strict=True)
    )
    owner = doc.astype(int)
    for column in ("val", "end", "filed", "form", "accn"):
        if column not in rows:
            raise _unreadable(docs, int(owner[0]), f"KeyError: {column!r}")
    for column in ("start", "fp"):
        if column not in rows:
            rows[column] = None
    value = _parsed(docs, owner, rows["val"], "value", _numbers)
    rows = rows.assign(
        _doc=owner,
        statement=statement,
        line_item=item,
        value=value * sign.astype(float),
        currency=np.where(unit != "shares", unit, None),
        priority=priority.astype(int),
    )
    end = _parsed(docs, owner, rows["end"], "period end", _dates)
    days = (end - _parsed(docs, owner, rows["start"], "period start", _dates)).dt.days
    duration = rows["start"].notna()
    rows["period_type"] = np.select(
        [
            duration & days.between(*QUARTER_DAYS),
            duration & days.between(*YEAR_DAYS),
            ~duration & (rows["fp"] == "FY"),
            ~duration,
        ],
        ["quarterly", "annual", "annual", "quarterly"],
        default="",
    )
    kept = (rows["period_type"] != "").to_numpy()
    rows = rows[kept].assign(
        period_end=end[kept],
        reported_at=_parsed(docs, owner[kept], rows.loc[kept, "filed"], "filing date", _dates),
        reported_via="sec_filed",
        form=rows.loc[kept, "form"],
        accession=rows.loc[kept, "accn"],
    )
    # One value per document, item, period and filing: the highest-priority tag.
    rows = rows.sort_values(["_doc", "priority"], kind="stable").drop_duplicates(
        ["_doc", "statement", "period_type", "period_end", "line_item", "accession"]
    )
    return rows[[*STATEMENT_NUMBER_COLUMNS, "_doc"]]


def long_rows_problem(rows: pd.DataFrame) -> tuple[int, str, str] | None:
    """The first bad row of the documented long format (cells as text or typed): its position,
    field and what is wrong; None when every row is good. Shared by the csv source (bronze) and
    file drops (at pick-up), so both refuse the same rows."""
    text = rows.reindex(columns=list(LONG_COLUMNS)).astype(object)
    present = {c: text[c].notna() & (text[c].astype(str).str.strip() != "") for c in text}
    value = pd.to_numeric(text["value"].where(present["value"]), errors="coerce")
    problems = [
        ("statement", ~text["statement"].isin(REPORTED_STATEMENTS), "not income|balance|cashflow"),
        ("period_type", ~text["period_type"].isin(REPORTED_PERIOD_TYPES), "not annual|quarterly"),
        ("period_end", _bad_dates(text["period_end"], present["period_end"], True), "not a date"),
        ("line_item", ~present["line_item"], "empty"),
        ("value", present["value"] & value.isna(), "not a number"),
        (
            "reported_at",
            _bad_dates(text["reported_at"], present["reported_at"], False),
            "not a date (YYYY-MM-DD) or empty",
        ),
    ]
    first = None
    for field, bad, why in problems:
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            if first is None or row < first[0]:
                first = (row, field, f"{text[field].iloc[row]!r} is {why}")
    return first


def _bad_dates(cells: pd.Series, present: pd.Series, required: bool) -> pd.Series:
    parsed = pd.to_datetime(cells.where(present), format="%Y-%m-%d", errors="coerce")
    return (present & parsed.isna()) | (~present if required else False)


def _long_rows(record: dict) -> pd.DataFrame:
    rows = pd.DataFrame(record["rows"])
    missing = [c for c in LONG_COLUMNS if c not in rows and c not in ("currency", "reported_at")]
    if missing:
        raise StatementFormatError(f"rows lack column(s) {missing}")
    rows = rows.reindex(columns=list(LONG_COLUMNS))
    problem = long_rows_problem(rows)
    if problem:
        row, field, why = problem
        raise StatementFormatError(f"row {row + 1}, field {field}: {why}")
    rows["value"] = pd.to_numeric(rows["value"], errors="raise")
    rows["period_end"] = pd.to_datetime(rows["period_end"], format="%Y-%m-%d")
    rows["reported_at"] = pd.to_datetime(rows["reported_at"], format="%Y-%m-%d")
    rows["currency"] = rows["currency"].where(rows["currency"].notna(), None)
    return rows.assign(
        reported_via=np.where(rows["reported_at"].notna(), "reported", None),
        form=None,
        accession=None,
    )


# What a statement document says about each number, whatever the format (a bronze row less
# its ticker and lineage).
STATEMENT_NUMBER_COLUMNS = (*LONG_COLUMNS, "reported_via", "form", "accession")


def _empty_long() -> pd.DataFrame:
    return pd.DataFrame(columns=[*STATEMENT_NUMBER_COLUMNS])


# -- silver --------------------------------------------------------------------------------
_FACT = "ticker, statement, period_type, period_end, line_item"
# Observations of a fact in version order: by the report's own date where the source dates
# every report (EDGAR filings, CSV rows), then by fetch.
_ORDER = "own_date NULLS FIRST, fetched_at, fetch_id, accession NULLS FIRST"

SILVER_FACTS_SQL = f"""
WITH obs AS (
    SELECT *,
        CASE WHEN reported_via IN ('sec_filed', 'reported') THEN reported_at END AS own_date
    FROM bronze.financial_statements
),
flagged AS (
    SELECT *,
        CASE WHEN value IS DISTINCT FROM lag(value) OVER (PARTITION BY {_FACT} ORDER BY {_ORDER})
            THEN 1 ELSE 0 END AS changed
    FROM obs
),
numbered AS (
    SELECT *,
        sum(changed) OVER (PARTITION BY {_FACT} ORDER BY {_ORDER}
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)::INTEGER AS version,
    FROM flagged
),
versions AS (
    SELECT *,
        min(fetched_at) OVER (PARTITION BY {_FACT}, version) AS first_seen
    FROM numbered
    QUALIFY row_number() OVER (PARTITION BY {_FACT}, version ORDER BY {_ORDER}) = 1
),
dated AS (
    SELECT *,
        CASE
            WHEN version > 1 AND own_date IS NULL THEN 'first_seen'
            WHEN reported_via = 'earnings_date' THEN 'earnings_date+{REPORT_LAG_DAYS}d'
            WHEN reported_via = 'sec_filed' THEN 'sec_filed+{REPORT_LAG_DAYS}d'
            WHEN reported_via = 'sec_filing' THEN 'sec_filing+{REPORT_LAG_DAYS}d'
            WHEN reported_via = 'reported' THEN 'reported+{REPORT_LAG_DAYS}d'
            WHEN period_type = 'instant' THEN 'as_of+{SHARES_LAG_DAYS}d'
            WHEN period_type = 'quarterly' THEN 'period_end+{PERIOD_END_LAG_DAYS["quarterly"]}d'
            ELSE 'period_end+{PERIOD_END_LAG_DAYS["annual"]}d'
        END AS known_at_rule
    FROM versions
)
SELECT ticker, statement, period_type, period_end, line_item, value, currency, version,
    CASE
        WHEN known_at_rule = 'first_seen' THEN (timezone('{EXCHANGE_TZ.key}', first_seen))::DATE
        WHEN reported_at IS NOT NULL THEN reported_at + INTERVAL {REPORT_LAG_DAYS} DAY
        WHEN period_type = 'instant' THEN period_end + INTERVAL {SHARES_LAG_DAYS} DAY
        WHEN period_type = 'quarterly'
            THEN period_end + INTERVAL {PERIOD_END_LAG_DAYS["quarterly"]} DAY
        ELSE period_end + INTERVAL {PERIOD_END_LAG_DAYS["annual"]} DAY
    END::DATE AS known_at,
    known_at_rule,
    first_seen AS first_seen_at,
    lead(first_seen) OVER (PARTITION BY {_FACT} ORDER BY version) AS superseded_at,
    form, source, fetch_id
FROM dated
"""

# -- gold --------------------------------------------------------------------------------------
FLOW_ITEMS = (
    "TotalRevenue",
    "GrossProfit",
    "OperatingIncome",
    "NetIncome",
    "EBITDA",
    "ReconciledDepreciation",
    "OperatingCashFlow",
    "CapitalExpenditure",
)
BALANCE_ITEMS = (
    "StockholdersEquity",
    "TotalAssets",
    "TotalDebt",
    "CashAndCashEquivalents",
    "CurrentAssets",
    "CurrentLiabilities",
    "OrdinarySharesNumber",
)
# A fact's version as of day E is only needed for periods that can still enter a ratio: the
# last four quarters, the last fiscal year and the balance a year before the latest.
STATE_WINDOW_DAYS = 800
_ITEMS = ", ".join(f"'{i}'" for i in (*FLOW_ITEMS, *BALANCE_ITEMS))


def _pivot(items: tuple[str, ...], column: str, suffix: str = "") -> str:
    return ",\n        ".join(
        f"max(CASE WHEN line_item = '{i}' THEN {column} END) AS \"{i}{suffix}\"" for i in items
    )


def _positive(x: str) -> str:
    return f"CASE WHEN {x} > 0 THEN {x} END"


# Per ticker, the facts known change only on `known_at` days ("events"). The inputs of every
# ratio are computed once per event, as of that day; each session takes the inputs of its
# latest event (ASOF JOIN). A run over [start, end] needs the events in that range plus the last
# one before it, so a one-session run costs one session whatever the history holds.
GOLD_FUNDAMENTALS_SQL = f"""
WITH facts AS (
    SELECT ticker, statement, period_type, period_end, line_item, value, version, known_at
    FROM silver.financial_facts
    WHERE known_at <= $end AND line_item IN ({_ITEMS})
        AND ($tickers IS NULL OR list_contains($tickers, ticker))
),
events AS (
    SELECT DISTINCT ticker, known_at AS as_of FROM facts WHERE known_at > $start
    UNION
    SELECT ticker, max(known_at) FROM facts WHERE known_at <= $start GROUP BY ticker
),
state AS (  -- per event: each fact's version with the latest known_at on or before it
    SELECT e.as_of, f.*
    FROM events e JOIN facts f
        ON f.ticker = e.ticker AND f.known_at <= e.as_of
        AND f.period_end > e.as_of - INTERVAL {STATE_WINDOW_DAYS} DAY
    QUALIFY row_number() OVER (
        PARTITION BY f.ticker, e.as_of, f.statement, f.period_type, f.period_end, f.line_item
        ORDER BY f.known_at DESC, f.version DESC) = 1
),
quarters AS (
    SELECT ticker, as_of, line_item, period_end, value FROM state
    WHERE period_type = 'quarterly' AND statement <> 'balance'
),
years AS (
    SELECT ticker, as_of, line_item, period_end, value FROM state
    WHERE period_type = 'annual' AND statement <> 'balance'
),
derived_q4 AS (  -- fiscal Q4 = the year's figure - its three other quarters, where not reported
    SELECT y.ticker, y.as_of, y.line_item, y.period_end, any_value(y.value) - sum(q.value) AS value
    FROM years y JOIN quarters q
        ON q.ticker = y.ticker AND q.as_of = y.as_of AND q.line_item = y.line_item
        AND q.period_end > y.period_end - INTERVAL 350 DAY
        AND q.period_end < y.period_end - INTERVAL 20 DAY
    WHERE NOT EXISTS (
        SELECT 1 FROM quarters r WHERE r.ticker = y.ticker AND r.as_of = y.as_of
            AND r.line_item = y.line_item AND r.period_end = y.period_end)
    GROUP BY y.ticker, y.as_of, y.line_item, y.period_end
    HAVING count(*) = 3
),
last4 AS (
    SELECT ticker, as_of, line_item, sum(value) AS ttm, max(period_end) AS last_end,
        min(period_end) AS first_end, count(*) AS n
    FROM (
        SELECT * FROM (SELECT * FROM quarters UNION ALL SELECT * FROM derived_q4)
        QUALIFY row_number() OVER (
            PARTITION BY ticker, as_of, line_item ORDER BY period_end DESC) <= 4
    )
    GROUP BY ALL
),
last_year AS (
    SELECT ticker, as_of, line_item, period_end, value FROM years
    QUALIFY row_number() OVER (PARTITION BY ticker, as_of, line_item ORDER BY period_end DESC) = 1
),
ttm AS (  -- four consecutive quarters (ends 250-300 days apart), unless a later fiscal year
    SELECT coalesce(l.ticker, y.ticker) AS ticker, coalesce(l.as_of, y.as_of) AS as_of,
        coalesce(l.line_item, y.line_item) AS line_item,
        CASE
            WHEN l.n = 4 AND date_diff('day', l.first_end, l.last_end) BETWEEN 250 AND 300
                AND l.last_end >= coalesce(y.period_end, l.last_end) THEN l.ttm
            ELSE y.value
        END AS value
    FROM last4 l FULL JOIN last_year y
        ON l.ticker = y.ticker AND l.as_of = y.as_of AND l.line_item = y.line_item
),
flows AS (
    SELECT ticker, as_of,
        {_pivot(FLOW_ITEMS, "value")}
    FROM ttm GROUP BY ticker, as_of
),
balances AS (  -- one balance per period end: the quarterly one where both exist
    SELECT ticker, as_of, line_item, period_end, value FROM state
    WHERE statement = 'balance'
    QUALIFY row_number() OVER (
        PARTITION BY ticker, as_of, line_item, period_end ORDER BY period_type = 'quarterly' DESC
    ) = 1
),
latest_end AS (
    SELECT ticker, as_of, max(period_end) AS balance_end FROM balances GROUP BY ticker, as_of
),
latest_balance AS (
    SELECT b.ticker, b.as_of, any_value(e.balance_end) AS balance_end,
        {_pivot(BALANCE_ITEMS, "b.value")}
    FROM balances b JOIN latest_end e
        ON b.ticker = e.ticker AND b.as_of = e.as_of AND b.period_end = e.balance_end
    GROUP BY b.ticker, b.as_of
),
year_ago AS (  -- the balance closest to a year before the latest one
    SELECT ticker, as_of, {_pivot(("StockholdersEquity", "TotalAssets"), "value", "_prior")}
    FROM (
        SELECT b.* FROM balances b JOIN latest_end e ON b.ticker = e.ticker AND b.as_of = e.as_of
        WHERE b.period_end BETWEEN e.balance_end - INTERVAL 400 DAY
            AND e.balance_end - INTERVAL 330 DAY
        QUALIFY dense_rank() OVER (PARTITION BY b.ticker, b.as_of
            ORDER BY abs(date_diff('day', b.period_end, e.balance_end) - 365), b.period_end) = 1
    )
    GROUP BY ticker, as_of
),
span AS (
    SELECT ticker, as_of, max(period_end) AS latest_period_end, max(known_at) AS latest_known_at
    FROM state GROUP BY ticker, as_of
),
inputs AS (
    SELECT s.*, f.* EXCLUDE (ticker, as_of), b.* EXCLUDE (ticker, as_of),
        y.* EXCLUDE (ticker, as_of)
    FROM span s
    LEFT JOIN flows f USING (ticker, as_of)
    LEFT JOIN latest_balance b USING (ticker, as_of)
    LEFT JOIN year_ago y USING (ticker, as_of)
),
counts AS (  -- dated share counts (yfinance's history), by when each version was known
    SELECT ticker, period_end AS counted_on, value AS share_count, known_at AS count_known_at
    FROM silver.financial_facts
    WHERE period_type = 'instant' AND line_item = '{SHARES_ITEM}' AND known_at <= $end
        AND ($tickers IS NULL OR list_contains($tickers, ticker))
),
actions AS (  -- cumulative split factor per ticker after each action (exp of summed logs)
    SELECT ticker, ex_date, dividend,
        exp(sum(ln(split_ratio)) OVER (PARTITION BY ticker ORDER BY ex_date
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) AS splits_through
    FROM silver.corporate_actions
    WHERE $tickers IS NULL OR list_contains($tickers, ticker)
),
bars AS (
    SELECT ticker, session_date, close FROM silver.daily_bars
    WHERE session_date BETWEEN $start AND $end
        AND ($tickers IS NULL OR list_contains($tickers, ticker))
),
priced AS (
    SELECT bars.*, i.*  EXCLUDE (ticker), coalesce(a.splits_through, 1.0) AS splits_now,
        c.counted_on, c.share_count, c.count_known_at
    FROM bars
    ASOF JOIN inputs i ON bars.ticker = i.ticker AND bars.session_date >= i.as_of
    ASOF LEFT JOIN actions a ON bars.ticker = a.ticker AND bars.session_date >= a.ex_date
    ASOF LEFT JOIN counts c ON bars.ticker = c.ticker AND bars.session_date >= c.count_known_at
),
adjusted AS (  -- the later-dated of the latest known share count and balance-sheet count,
               -- times the splits since its date
    SELECT p.* EXCLUDE (latest_known_at),
        CASE WHEN p.share_count IS NOT NULL
                AND (p.balance_end IS NULL OR p.counted_on >= p.balance_end)
            THEN p.share_count * p.splits_now / coalesce(ac.splits_through, 1.0)
            ELSE "OrdinarySharesNumber" * p.splits_now / coalesce(ab.splits_through, 1.0)
        END AS shares,
        CASE WHEN p.share_count IS NOT NULL
                AND (p.balance_end IS NULL OR p.counted_on >= p.balance_end)
            THEN greatest(p.latest_known_at, p.count_known_at)
            ELSE p.latest_known_at
        END AS latest_known_at
    FROM priced p
    ASOF LEFT JOIN actions ab ON p.ticker = ab.ticker AND p.balance_end >= ab.ex_date
    ASOF LEFT JOIN actions ac ON p.ticker = ac.ticker AND p.counted_on >= ac.ex_date
),
dividends AS (
    SELECT b.ticker, b.session_date,
        sum(a.dividend * a.splits_through) / any_value(b.splits_now) AS dividends_ttm
    FROM adjusted b JOIN actions a
        ON a.ticker = b.ticker AND a.dividend > 0
        AND a.ex_date > b.session_date - INTERVAL 365 DAY AND a.ex_date <= b.session_date
    GROUP BY b.ticker, b.session_date
),
measured AS (
    SELECT a.*, a.close * a.shares AS mcap,
        coalesce("EBITDA", "OperatingIncome" + "ReconciledDepreciation") AS ebitda_or_proxy,
        ("StockholdersEquity" + "StockholdersEquity_prior") / 2 AS avg_equity,
        ("TotalAssets" + "TotalAssets_prior") / 2 AS avg_assets,
        coalesce(d.dividends_ttm, 0) AS dividends_ttm
    FROM adjusted a LEFT JOIN dividends d USING (ticker, session_date)
)
SELECT ticker, session_date,
    shares AS shares_outstanding,
    mcap AS market_cap,
    mcap / {_positive('"NetIncome"')} AS pe_ttm,
    mcap / {_positive('"StockholdersEquity"')} AS pb,
    mcap / {_positive('"TotalRevenue"')} AS ps_ttm,
    (mcap + "TotalDebt" - "CashAndCashEquivalents") / {_positive("ebitda_or_proxy")} AS ev_ebitda_ttm,
    "NetIncome" / {_positive("avg_equity")} AS roe_ttm,
    "NetIncome" / {_positive("avg_assets")} AS roa_ttm,
    "GrossProfit" / {_positive('"TotalRevenue"')} AS gross_margin_ttm,
    "OperatingIncome" / {_positive('"TotalRevenue"')} AS operating_margin_ttm,
    "NetIncome" / {_positive('"TotalRevenue"')} AS net_margin_ttm,
    "TotalDebt" / {_positive('"StockholdersEquity"')} AS debt_to_equity,
    "CurrentAssets" / {_positive('"CurrentLiabilities"')} AS current_ratio,
    "OperatingCashFlow" + "CapitalExpenditure" AS fcf_ttm,
    ("OperatingCashFlow" + "CapitalExpenditure") / {_positive("mcap")} AS fcf_yield,
    dividends_ttm / close AS dividend_yield_ttm,
    latest_period_end, latest_known_at
FROM measured
"""
