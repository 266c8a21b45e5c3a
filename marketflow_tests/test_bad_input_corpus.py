"""The bad-input corpus: one table of hostile inputs run through every source and the file drop.

Every case is fed to each entry point it applies to: the CSV source (`CsvSource.fetch_bars`),
dropped CSV and JSON files (the landing store, then `parse_drop`, as the file_drops sensor
does), Yahoo (`YFinanceSource.fetch_bars` with yfinance's history answering the case's rows),
the simulator (its fault switches) and the ticker universe. Accepted payloads are typed exactly
as bronze types them (`type_bars`, `latest_fetch_rows`) and judged by silver's own rules
(`classified_bars_sql`) in DuckDB. For every (case, entry point) the corpus asserts:

    input rows = landed rows + quarantined rows        (quarantined = with a reason and detail)

or that the input is refused as a whole with an error naming the file, and for a bad row its
line and field. Accepted rows must also fit silver's types (finite prices, BIGINT volume).
The size of the corpus is printed by the last test and recorded in the README.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from marketflow_assets.ingestion.landing import DropRejected, parse_drop
from marketflow_assets.sources import yahoo
from marketflow_assets.sources.base import BarsQuery, PayloadFormatError
from marketflow_assets.sources.csv_files import CsvSource
from marketflow_assets.sources.simulator import SimulatorFaults, SimulatorSource
from marketflow_assets.storage.object_store import LocalObjectStore, UnsafeObjectError
from marketflow_assets.tickers import InvalidTickerError, load_universe
from marketflow_assets.transforms.bar_quality import classified_bars_sql
from marketflow_assets.transforms.payloads import latest_fetch_rows, type_bars

README = Path(__file__).resolve().parents[1] / "README.md"
TODAY = dt.date(2024, 12, 31)
YEAR = BarsQuery(("BAD",), dt.date(2024, 1, 1), TODAY)
HEADER = "Date,Open,High,Low,Close,Volume"
LANDED = "landed"
# Every (case, entry point) evaluated in this session, for the size report at the end.
TALLY: Counter = Counter()


def bar(date: str, o="10", h="11", lo="9", c="10.5", v="1000") -> tuple[str, ...]:
    return (date, o, h, lo, c, v)


GOOD = (bar("2024-06-03"), bar("2024-06-04"), bar("2024-06-05"))


@dataclass(frozen=True)
class Case:
    """Rows (Date, Open, High, Low, Close, Volume as text) and what must become of them: a count
    per outcome (`landed` or a rejection reason), or `refused` (a regex the error must match)."""

    name: str
    rows: tuple[tuple[str, ...], ...]
    expect: dict[str, int] = field(default_factory=dict)
    refused: str | None = None


ROW_CASES = [
    Case("clean", GOOD, {LANDED: 3}),
    Case("nan_price", (*GOOD, bar("2024-06-06", o="NaN")), {LANDED: 3, "missing_value": 1}),
    Case("empty_cell", (*GOOD, bar("2024-06-06", c="")), {LANDED: 3, "missing_value": 1}),
    Case("plus_inf_high", (*GOOD, bar("2024-06-06", h="inf")), {LANDED: 3, "non_finite_value": 1}),
    Case(
        "minus_inf_low", (*GOOD, bar("2024-06-06", lo="-inf")), {LANDED: 3, "non_finite_value": 1}
    ),
    Case("zero_price", (*GOOD, bar("2024-06-06", o="0")), {LANDED: 3, "non_positive_price": 1}),
    Case(
        "negative_price", (*GOOD, bar("2024-06-06", c="-10")), {LANDED: 3, "non_positive_price": 1}
    ),
    Case(
        "price_1e308", (*GOOD, bar("2024-06-06", h="1e308")), {LANDED: 3, "price_out_of_range": 1}
    ),
    Case(
        "volume_1e20", (*GOOD, bar("2024-06-06", v="1e20")), {LANDED: 3, "volume_out_of_range": 1}
    ),
    Case(
        "volume_fractional",
        (*GOOD, bar("2024-06-06", v="100.5")),
        {LANDED: 3, "fractional_volume": 1},
    ),
    Case("volume_negative", (*GOOD, bar("2024-06-06", v="-5")), {LANDED: 3, "negative_volume": 1}),
    Case(
        "price_not_a_number", (*GOOD, bar("2024-06-06", o="ten")), {LANDED: 3, "missing_value": 1}
    ),
    Case("duplicate_rows", (*GOOD, GOOD[0]), {LANDED: 3, "duplicate": 1}),
    Case(
        "conflicting_duplicates",
        (*GOOD, bar("2024-06-03", c="10.7")),
        {LANDED: 2, "conflicting_duplicate": 2},
    ),
    Case("unsorted", (GOOD[2], GOOD[0], GOOD[1]), {LANDED: 3}),
    Case("saturday", (*GOOD, bar("2024-06-08")), {LANDED: 3, "non_session_date": 1}),
    Case("holiday", (*GOOD, bar("2024-06-19")), {LANDED: 3, "non_session_date": 1}),
]
TEXT_DATE_CASES = [  # dates only text sources can carry
    Case("timezone_less_time", (*GOOD, bar("2024-06-06 00:00:00")), {LANDED: 4}),
    Case("offset_with_colon", (*GOOD, bar("2024-06-06 00:00:00-04:00")), {LANDED: 4}),
    Case("offset_without_colon", (*GOOD, bar("2024-06-06 00:00:00-0400")), {LANDED: 4}),
    Case("utc_offset_0000", (*GOOD, bar("2024-06-06T15:30:00+0000")), {LANDED: 4}),
    Case("zulu", (*GOOD, bar("2024-06-06T15:30:00Z")), {LANDED: 4}),
    Case(
        "trailing_text_date",
        (*GOOD, bar("2024-06-06 (holiday?)")),
        refused=r"line 5, field Date: '2024-06-06 \(holiday\?\)' is not YYYY-MM-DD",
    ),
    Case(
        "dst_ambiguous",
        (*GOOD, bar("2024-11-03 01:30:00")),
        refused=r"line 5, field Date: '2024-11-03 01:30:00' is not one instant",
    ),
    Case(
        "dst_nonexistent",
        (*GOOD, bar("2024-03-10 02:30:00")),
        refused=r"line 5, field Date: '2024-03-10 02:30:00' is not one instant",
    ),
    Case("not_a_date", (bar("2024-02-30"), *GOOD), refused=r"line 2, field Date: .*calendar date"),
    Case("day_first", (bar("03/06/2024"), *GOOD), refused=r"line 2, field Date: '03/06/2024'"),
]


def csv_text(rows, *, header: str = HEADER, newline: str = "\n", ticker: str | None = None) -> str:
    prefix = f"{ticker}," if ticker else ""
    head = ("Ticker," if ticker else "") + header
    return newline.join([head, *(prefix + ",".join(r) for r in rows)]) + newline


def json_text(rows) -> str:
    """Bars as a JSON drop carries them: numbers where the text is one, else the text."""

    def cell(text: str):
        try:
            return float(text)
        except ValueError:
            return text

    names = ("date", "open", "high", "low", "close", "volume")
    return json.dumps(
        {"ticker": "BAD", "bars": [dict(zip(names, map(cell, r), strict=True)) for r in rows]}
    )


@dataclass
class Outcome:
    rows: int  # input rows
    judged: pd.DataFrame | None = None  # every typed row with its reason (None = landed)
    refused: str | None = None


def judge(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Type a payload as bronze does and classify it with silver's rules."""
    raw = frame.assign(
        _source=source,
        _fetch_id="corpus",
        _fetched_at=pd.Timestamp(TODAY, tz="UTC"),
        _object_key=f"raw/{source}/corpus",
    )
    typed = latest_fetch_rows(type_bars(raw, "1d"))
    with duckdb.connect() as con:
        con.execute("CREATE SCHEMA bronze")
        con.register("typed", typed)
        con.execute("CREATE TABLE bronze.daily_bars AS SELECT * FROM typed")
        params = {"start": dt.date(1900, 1, 1), "end": dt.date(2100, 1, 1), "tickers": None}
        judged = con.execute(classified_bars_sql("1d"), params).df()
        # What silver keeps must fit silver's types: the casts it does cannot fail.
        con.register("judged", judged)
        con.execute(
            "SELECT CAST(round(volume) AS BIGINT), CAST(open + high + low + close AS DECIMAL(38, 6))"
            " FROM judged WHERE reason IS NULL"
        ).fetchall()
    return judged


def tally(outcome: Outcome) -> Counter:
    if outcome.refused is not None:
        return Counter({"refused": outcome.rows})
    reasons = outcome.judged["reason"].fillna(LANDED)
    return Counter(reasons.tolist())


def assert_accounted(outcome: Outcome, case: Case, where: str) -> None:
    """Input rows = landed + quarantined, or refused naming the file (and line and field)."""
    TALLY["evaluations"] += 1
    TALLY["rows"] += outcome.rows
    if case.refused is not None:
        assert outcome.refused is not None, f"{case.name}: accepted, expected a refusal"
        assert where in outcome.refused, outcome.refused
        assert re.search(case.refused, outcome.refused), outcome.refused
        return
    assert outcome.refused is None, outcome.refused
    got = tally(outcome)
    assert sum(got.values()) == outcome.rows  # nothing lost, nothing invented
    assert dict(got) == case.expect
    rejected = outcome.judged[outcome.judged["reason"].notna()]
    assert rejected["detail"].notna().all() and (rejected["raw_object"] != "").all()


# -- entry points --------------------------------------------------------------------------------
def via_csv_source(folder: Path, data: bytes, rows: int) -> tuple[Outcome, str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "BAD.csv").write_bytes(data)
    payload = CsvSource(folder).fetch_bars(YEAR)
    where = str(folder / "BAD.csv")
    if "BAD" in payload.errors:  # the ticker's failure: the rest of a run's tickers go on
        return Outcome(rows, refused=payload.errors["BAD"]), where
    return Outcome(rows, judged=judge(payload.frame, "csv")), where


def via_drop(home: Path, name: str, data: bytes, rows: int) -> tuple[Outcome, str]:
    """As the file_drops sensor reads a dropped file: through the landing store, then parsed."""
    store = LocalObjectStore(home, refuse_hard_links=True)
    key = f"landing/{name}"
    if ".." not in name:
        (home / "landing").mkdir(parents=True, exist_ok=True)
        (home / key).write_bytes(data)
    try:
        dropped = parse_drop(key, store.get(key), today=TODAY)
    except (DropRejected, UnsafeObjectError, ValueError) as exc:
        return Outcome(rows, refused=str(exc)), key
    return Outcome(rows, judged=judge(dropped.frame, "file")), key


def via_yahoo(tmp_path: Path, monkeypatch, case: Case) -> Outcome:
    """yfinance's history answers the case's rows as Yahoo does: floats on a tz-aware index."""
    text = pd.DataFrame(list(case.rows), columns=HEADER.split(","))
    frame = pd.DataFrame(
        {c: pd.to_numeric(text[c], errors="coerce") for c in ("Open", "High", "Low", "Close")}
        | {"Adj Close": pd.to_numeric(text["Close"], errors="coerce")}
        | {"Volume": pd.to_numeric(text["Volume"], errors="coerce")}
        | {"Dividends": 0.0, "Stock Splits": 0.0},
    )
    frame.index = pd.DatetimeIndex(pd.to_datetime(text["Date"]), name="Date").tz_localize(
        "America/New_York"
    )
    monkeypatch.setattr(yahoo, "_history", lambda symbol, kwargs: frame.copy())
    source = yahoo.YFinanceSource(cache_dir=tmp_path / "yf-cache")
    payload = source.fetch_bars(YEAR)
    assert not payload.errors
    return Outcome(len(case.rows), judged=judge(payload.frame, "yfinance"))


# -- row cases: CSV source, CSV and JSON drops, Yahoo ----------------------------------------------
@pytest.mark.parametrize("case", ROW_CASES + TEXT_DATE_CASES, ids=lambda c: c.name)
def test_csv_source(case, tmp_path):
    outcome, where = via_csv_source(tmp_path / "csv", csv_text(case.rows).encode(), len(case.rows))
    assert_accounted(outcome, case, where)


@pytest.mark.parametrize("case", ROW_CASES + TEXT_DATE_CASES, ids=lambda c: c.name)
def test_csv_drop(case, tmp_path):
    data = csv_text(case.rows).encode()
    outcome, where = via_drop(tmp_path, "BAD.csv", data, len(case.rows))
    assert_accounted(outcome, case, where)


@pytest.mark.parametrize("case", ROW_CASES + TEXT_DATE_CASES, ids=lambda c: c.name)
def test_json_drop(case, tmp_path):
    outcome, where = via_drop(tmp_path, "BAD.json", json_text(case.rows).encode(), len(case.rows))
    if case.refused:  # a JSON file has bars, not lines
        case = Case(case.name, case.rows, refused=re.sub(r"line (\d+)", _json_bar, case.refused))
    assert_accounted(outcome, case, where)


def _json_bar(match: re.Match) -> str:
    return f"bar {int(match.group(1)) - 2}"


# Yahoo serves floats on a timezone-aware index: text cells cannot occur.
YAHOO_CASES = [c for c in ROW_CASES if c.name not in {"price_not_a_number", "empty_cell"}]


@pytest.mark.parametrize("case", YAHOO_CASES, ids=lambda c: c.name)
def test_yahoo(case, tmp_path, monkeypatch):
    assert_accounted(via_yahoo(tmp_path, monkeypatch, case), case, "")


def test_offsets_are_honoured(tmp_path):
    """`+0000` and `-0400` mean what they say (15:30Z stays 15:30Z)."""
    rows = (bar("2024-06-06T15:30:00+0000"), bar("2024-06-07 00:00:00-0400"))
    outcome, _ = via_drop(tmp_path, "BAD.csv", csv_text(rows).encode(), 2)
    ts = outcome.judged.sort_values("ts")["ts"].dt.tz_convert("UTC").tolist()
    assert ts == [
        pd.Timestamp("2024-06-06 15:30", tz="UTC"),
        pd.Timestamp("2024-06-07 04:00", tz="UTC"),
    ]


# -- whole-file cases: CSV source and drops ---------------------------------------------------------
def _junk() -> bytes:
    return bytes(range(256)) * 64  # NULs, control bytes, invalid UTF-8


FILE_CASES = [
    # (name, bytes, input rows, expected outcome)
    ("empty_file", b"", 0, Case("empty_file", (), refused=r"not a readable CSV")),
    ("header_only", (HEADER + "\n").encode(), 0, Case("header_only", (), refused=r"no rows")),
    (
        "wrong_columns",
        b"Day,Price,Qty\n2024-06-03,10,5\n",
        1,
        Case(
            "wrong_columns", (), refused=r"missing column\(s\) Date, Open, High, Low, Close, Volume"
        ),
    ),
    (
        "binary_junk",
        _junk(),
        0,
        Case("binary_junk", (), refused=r"not a readable CSV|missing column"),
    ),
    ("utf8_bom", ("\ufeff" + csv_text(GOOD)).encode(), 3, Case("utf8_bom", GOOD, {LANDED: 3})),
    ("crlf", csv_text(GOOD, newline="\r\n").encode(), 3, Case("crlf", GOOD, {LANDED: 3})),
    (
        "extra_columns_and_spaces",
        b"Date, Open, High, Low, Close, Volume, Comment\n2024-06-03, 10, 11, 9, 10.5, 1000, hi\n",
        1,
        Case("extra_columns_and_spaces", (), {LANDED: 1}),
    ),
]


@pytest.mark.parametrize(
    ("name", "data", "rows", "case"), FILE_CASES, ids=[c[0] for c in FILE_CASES]
)
@pytest.mark.parametrize("entry", ["csv_source", "csv_drop"])
def test_whole_files(entry, name, data, rows, case, tmp_path):
    if entry == "csv_source":
        outcome, where = via_csv_source(tmp_path / "csv", data, rows)
    else:
        outcome, where = via_drop(tmp_path, "BAD.csv", data, rows)
    if name == "header_only" and entry == "csv_source":
        case = Case(name, (), refused=r"has no rows in 2024-01-01\.\.2024-12-31")
    if name == "binary_junk":  # how many "rows" junk holds is whatever the reader made of it
        outcome.rows = 0
    assert_accounted(outcome, case, where)


@pytest.mark.slow
def test_a_100_mb_drop_lands_every_row(tmp_path):
    """100 MB in one drop (a wide comment column makes it big without millions of rows)."""
    sessions = pd.bdate_range("2023-06-01", "2024-05-31").strftime("%Y-%m-%d")
    tickers = [f"T{i:03d}" for i in range(400)]
    pad = "x" * 1000
    lines = [f"{t},{d},10,11,9,10.5,1000,{pad}" for t in tickers for d in sessions]
    data = ("Ticker,Date,Open,High,Low,Close,Volume,Comment\n" + "\n".join(lines) + "\n").encode()
    assert len(data) >= 100 * 1024 * 1024
    outcome, where = via_drop(tmp_path, "big.csv", data, len(lines))
    # Weekday holidays (Juneteenth, Thanksgiving ...) are quarantined as non-session dates.
    holidays = sum(
        1
        for d in sessions
        if d in {"2023-06-19", "2023-07-04", "2023-09-04"}
        or d
        in {
            "2023-11-23",
            "2023-12-25",
            "2024-01-01",
            "2024-01-15",
            "2024-02-19",
            "2024-03-29",
            "2024-05-27",
        }
    )
    expect = {LANDED: (len(sessions) - holidays) * 400, "non_session_date": holidays * 400}
    assert_accounted(outcome, Case("100mb", (), expect), where)


# -- hostile file names (drops) ---------------------------------------------------------------------
def test_hostile_file_names(tmp_path):
    good = csv_text(GOOD).encode()
    with_ticker = csv_text(GOOD, ticker="BAD").encode()
    home = tmp_path / "home"
    (home / "landing").mkdir(parents=True)
    (home / "AAPL.csv").write_bytes(good)  # outside landing/
    (home / "landing" / "LINK.csv").symlink_to(home / "AAPL.csv")
    (home / "landing" / "HARD.csv").hardlink_to(home / "AAPL.csv")
    cases = [
        ("../AAPL.csv", b"", refused_case(r"escapes the store root")),
        ("LINK.csv", b"", refused_case(r"landing/LINK.csv is a symbolic link")),
        ("HARD.csv", b"", refused_case(r"landing/HARD.csv is a hard link")),
        ("<!channel>.csv", good, refused_case(r"the file name is not a ticker")),
        ("données ÄAPL.csv", good, refused_case(r"the file name is not a ticker")),
        ("<!channel>.csv", with_ticker, Case("named", GOOD, {LANDED: 3})),
        ("a b; rm -rf $HOME.csv", with_ticker, Case("shell", GOOD, {LANDED: 3})),
    ]
    for name, data, case in cases:
        if data:
            (home / "landing" / name).write_bytes(data)
        store = LocalObjectStore(home, refuse_hard_links=True)
        key = f"landing/{name}"
        try:
            outcome = Outcome(
                3, judged=judge(parse_drop(key, store.get(key), today=TODAY).frame, "file")
            )
        except (DropRejected, UnsafeObjectError, ValueError) as exc:
            outcome = Outcome(3, refused=str(exc))
        assert_accounted(outcome, case, key)
    assert (home / "AAPL.csv").read_bytes() == good  # the link targets are untouched


def refused_case(pattern: str) -> Case:
    return Case("refused", GOOD, refused=pattern)


# -- hostile tickers: drops (Ticker column) and the universe ---------------------------------------
HOSTILE_TICKERS = [
    "msf\u0131",  # dotless i: upper() would make it MSFI
    "stra\u00dfe",  # sharp s: upper() would make it STRASSE
    "\u0410APL",  # Cyrillic A
    "\uff21\uff21\uff30\uff2c",  # fullwidth AAPL
    "AAPL\u200b",  # zero-width space
    "../etc/passwd",
    "AAPL/../../x",
    "A'; DROP TABLE silver.daily_bars; --",
    'A"||(SELECT 1)',
    "A%_*",
    "A" * 500,
]


@pytest.mark.parametrize("ticker", HOSTILE_TICKERS, ids=range(len(HOSTILE_TICKERS)))
def test_hostile_tickers(ticker, tmp_path):
    rows = (bar("2024-06-03"),)
    data = (f"Ticker,{HEADER}\nGOOD,{','.join(rows[0])}\n{ticker},{','.join(rows[0])}\n").encode()
    outcome, where = via_drop(tmp_path, "drop.csv", data, 2)
    assert_accounted(
        outcome, Case("ticker", (), refused=r"line 3, field Ticker: invalid ticker"), where
    )
    with pytest.raises(InvalidTickerError, match="invalid ticker"):
        load_universe(f"AAPL,{ticker}")
    TALLY["evaluations"] += 1


# -- the simulator: its fault switches ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("faults", "reasons"),
    [
        ("duplicates=0.2", {"duplicate"}),
        ("bad_ticks=0.3", {"high_below_low", "non_positive_price", "missing_value"}),
        ("missing_bars=0.2", set()),
        ("price_100x=0.05", set()),
    ],
)
def test_simulator(faults, reasons):
    source = SimulatorSource(
        seed=7, clock=dt.datetime(2024, 6, 8, tzinfo=dt.UTC), faults=SimulatorFaults.parse(faults)
    )
    query = BarsQuery(("AAPL", "MSFT", "KO"), dt.date(2024, 1, 2), dt.date(2024, 6, 7))
    payload = source.fetch_bars(query)
    outcome = Outcome(len(payload.frame), judged=judge(payload.frame, "simulator"))
    got = tally(outcome)
    TALLY["evaluations"] += 1
    TALLY["rows"] += outcome.rows
    assert sum(got.values()) == outcome.rows and got[LANDED] > 0
    assert set(got) - {LANDED} == reasons


def test_a_bad_csv_file_fails_its_ticker_only(tmp_path):
    """One unreadable ticker file: that ticker is named in the payload's errors (file, line,
    field); the other tickers' rows are served."""
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "GOOD.csv").write_text(csv_text(GOOD))
    (folder / "BAD.csv").write_text(csv_text((*GOOD, bar("2024-06-06 (holiday?)"))))
    payload = CsvSource(folder).fetch_bars(BarsQuery(("GOOD", "BAD"), YEAR.start, YEAR.end))
    assert payload.tickers_with_data == ["GOOD"] and len(payload.frame) == 3
    assert re.search(r"BAD\.csv, line 5, field Date", payload.errors["BAD"])
    with pytest.raises(PayloadFormatError, match=r"BAD\.csv, line 5, field Date"):
        CsvSource(folder).read_file("BAD")


def test_corpus_size_is_recorded_in_the_readme():
    """Runs last in this module: the README states how many cases the corpus holds."""
    cases = (
        3 * len(ROW_CASES + TEXT_DATE_CASES)  # CSV source, CSV drop, JSON drop
        + len(YAHOO_CASES)
        + 2 * len(FILE_CASES)
        + 1  # 100 MB
        + 7  # hostile file names
        + 2 * len(HOSTILE_TICKERS)  # drop + universe
        + 4  # simulator faults
    )
    match = re.search(r"bad-input corpus: (\d+) cases", README.read_text())
    assert match, "README: document the bad-input corpus size"
    assert int(match.group(1)) == cases
    if TALLY["evaluations"]:  # when the whole module ran: cases evaluated in this session
        print(f"bad-input corpus: {TALLY['evaluations']} evaluations, {TALLY['rows']} input rows")
