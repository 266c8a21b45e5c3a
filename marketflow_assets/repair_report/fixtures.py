"""Run each yfinance fixture file through the csv source into silver and compare with its
`-fixed` twin.

Each file is one ticker (its Yahoo symbol from the file name, so its exchange comes from the
suffix), served by `CsvSource` and taken through the same functions the assets run: bronze typing
(`type_bars`, `latest_fetch_rows`), corporate actions with dividend repairs
(`corporate_actions_frame`), and the silver validation (`validate_daily_bars`), on an in-memory
warehouse. Silver is compared with the fixed file in the file's own basis: its `Adj Close` with
silver's `adj_close`, its `Close` (split-adjusted as of the download) with silver's traded close
divided by every later split, within 1e-4 relative.

Each file runs with the repair kinds its case is about, as yfinance's own test runs it: the
dividend cases (`bad-div`, `missing-div-adjust`, `cg-double-count`) go through yfinance's
`_fix_bad_div_adjust` alone, so their `-fixed` twins keep any 100x block of carried quotes the
provider served (CLC.L, LSC.L, NVT.L); for them silver's bar rescaling (`unit_100x`,
`split_unapplied`) is switched off. Every other case and every control runs with all repairs on
(`--all-repairs` runs every file so; the rows silver then rescales beyond a dividend-only fix are
counted as `repaired beyond fixed`, with their reason on the row).

A row is `equal`, `quarantined` (in silver.rejected_bars with a reason) or `different` (silver
serves another number: the failure the issue forbids). A pair is fully equal when every row
the maintainers give prices for is equal. Controls (`*-no-bad-divs.csv`) must come out with no
repair and no quarantine beyond rows that are invalid on their own (missing values).
"""

from __future__ import annotations

import datetime as dt
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from marketflow_assets.contracts import bronze as bronze_contracts
from marketflow_assets.exchanges import SUFFIX_EXCHANGES
from marketflow_assets.sources.base import BarsQuery, Payload, PayloadFormatError
from marketflow_assets.sources.csv_files import CsvSource
from marketflow_assets.storage.warehouse import ensure_all_tables
from marketflow_assets.transforms.adjustments import corporate_actions_frame
from marketflow_assets.transforms.payloads import (
    corporate_action_events,
    latest_fetch_rows,
    type_bars,
)
from marketflow_assets.transforms.repairs import RepairSwitches
from marketflow_assets.transforms.silver_validation import validate_daily_bars

TOLERANCE = 1e-4
FILE_PATTERN = re.compile(
    r"^(?P<ticker>.+?)-(?P<interval>1d|1wk|1h|15m)-(?P<case>.+?)(?P<fixed>-fixed)?\.csv$"
)
# yfinance's test runs only its dividend repair on these cases (test_repair_bad_div_adjusts,
# test_repair_capital_gains_double_count)
DIVIDEND_CASES = ("bad-div", "missing-div-adjust", "cg-double-count")
INVALID_ON_THEIR_OWN = ("missing_value", "non_positive_price", "negative_volume")


def default_fixtures_dir() -> Path:
    """`<repo>/../shared/real_data/yfinance_tests_data` (never copied into the repo)."""
    return Path(__file__).resolve().parents[2].parent / "shared/real_data/yfinance_tests_data"


def yahoo_symbol(file_ticker: str) -> str:
    """File names write Yahoo's '.' as '-' (4063-T -> 4063.T); only a known suffix is one."""
    base, _, suffix = file_ticker.rpartition("-")
    return f"{base}.{suffix}" if base and suffix in SUFFIX_EXCHANGES else file_ticker


@dataclass(frozen=True)
class FileResult:
    file: str
    symbol: str
    interval: str
    control: bool
    input_rows: int
    silver_rows: int
    quarantined: int
    repaired: int  # bars re-scaled (unit, split)
    widened: int  # bars whose range was widened to include an auction print
    dividend_repairs: int
    equal: int | None  # rows equal to the fixed file (None for controls)
    repaired_beyond: int | None  # rows silver rescaled where the fixed file keeps the number
    different: int | None  # rows silently different
    compared: int | None
    reasons: str
    refused: bool = False  # the source refused the whole file with an error (nothing written)

    @property
    def reconciled(self) -> bool:
        return self.refused or self.input_rows == self.silver_rows + self.quarantined

    @property
    def passed(self) -> bool:
        if self.control:
            return (
                self.repaired == 0
                and self.dividend_repairs == 0
                and self.reconciled
                and not [
                    r
                    for r in self.reasons.split(", ")
                    if r and r.split(" ")[0] not in INVALID_ON_THEIR_OWN
                ]
            )
        return (
            not self.refused
            and self.reconciled
            and self.different == 0
            and self.equal == self.compared
        )


def payload_warehouse(
    payload: Payload, source_name: str, *, fetch_id: str, object_key: str, switches: RepairSwitches
) -> tuple[duckdb.DuckDBPyConnection, pd.DataFrame, pd.DataFrame]:
    """An in-memory warehouse holding a daily-bars payload as the assets would leave it before
    silver validation: typed bronze rows and the corporate actions (with dividend repairs); and
    those bronze rows and actions. The caller closes the connection."""
    frame = payload.frame.assign(
        _source=source_name,
        _fetch_id=fetch_id,
        _fetched_at=pd.Timestamp(payload.fetched_at),
        _object_key=object_key,
    )
    bronze = latest_fetch_rows(type_bars(frame, "1d"))
    events = pd.DataFrame(corporate_action_events(payload.frame))
    if not events.empty:
        events = events.assign(
            fetched_at=pd.Timestamp(payload.fetched_at), fetch_id=fetch_id, source=source_name
        )
    else:
        events = pd.DataFrame(columns=["ticker", "date", "dividend", "split_ratio", "prev_close"])
    actions = corporate_actions_frame(events, switches)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        ensure_all_tables(con)
        con.register("_bronze", bronze[bronze_contracts.DAILY_BARS.column_names])
        con.execute("INSERT INTO bronze.daily_bars SELECT * FROM _bronze")
        con.register("_actions", actions)
        con.execute("INSERT INTO silver.corporate_actions BY NAME SELECT * FROM _actions")
    except BaseException:
        con.close()
        raise
    return con, bronze, actions


def run_file(path: Path, switches: RepairSwitches | None = None) -> FileResult:
    switches = switches or RepairSwitches()
    match = FILE_PATTERN.match(path.name)
    if match is None:
        raise ValueError(f"{path.name}: not a yfinance fixture name")
    symbol = yahoo_symbol(match["ticker"])
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / f"{symbol}.csv").symlink_to(path.resolve())
        source = CsvSource(Path(tmp))
        read = source.read_file(symbol)
        assert read is not None
        dates = read[0]["_date"]
        payload = source.fetch_bars(BarsQuery((symbol,), dates.min(), dates.max()))
    con, bronze, actions = payload_warehouse(
        payload, source.name, fetch_id="fixture", object_key=path.name, switches=switches
    )
    try:
        days = bronze["session_date"].dropna()
        result = validate_daily_bars(con, days.min().date(), days.max().date(), [symbol], switches)
    finally:
        con.close()
    reasons = result.rejected["reason"].value_counts()
    fixed_path = path.with_name(path.name.replace(".csv", "-fixed.csv"))
    control = not fixed_path.exists()
    equal = repaired_beyond = different = compared = None
    if not control:
        equal, repaired_beyond, different, compared = _compare(
            result.bars, actions, fixed_path, path
        )
    return FileResult(
        file=path.name,
        symbol=symbol,
        interval=match["interval"],
        control=control,
        input_rows=len(payload.frame),
        silver_rows=len(result.bars),
        quarantined=len(result.rejected),
        repaired=int(result.repairs["kind"].str.contains("unit_100x|split_unapplied").sum()),
        widened=int(result.repairs["kind"].str.contains("range_widened").sum()),
        dividend_repairs=int(actions["repair_reason"].notna().sum()),
        equal=equal,
        repaired_beyond=repaired_beyond,
        different=different,
        compared=compared,
        reasons=", ".join(f"{r} {n}" for r, n in reasons.items()),
    )


def _compare(
    bars: pd.DataFrame, actions: pd.DataFrame, fixed_path: Path, bad_path: Path
) -> tuple[int, int, int, int]:
    """(equal, repaired beyond the fixed file, silently different, compared) rows of the fixed
    file with prices."""
    fixed = pd.read_csv(fixed_path)
    fixed["day"] = pd.to_datetime(fixed.iloc[:, 0].astype(str).str.slice(0, 10))
    served = pd.read_csv(bad_path)
    served["day"] = pd.to_datetime(served.iloc[:, 0].astype(str).str.slice(0, 10))
    fixed = fixed.merge(
        served[["day", "Adj Close"]].rename(columns={"Adj Close": "served_adj_close"}),
        on="day",
        how="left",
    )
    fixed = fixed[fixed[["Close", "Adj Close"]].notna().all(axis=1)]
    splits = actions[actions["split_ratio"] != 1].sort_values("ex_date")
    silver = bars.assign(day=pd.to_datetime(bars["session_date"]))
    # splits after each bar: suffix products over the ticker's splits
    ex = pd.to_datetime(splits["ex_date"]).to_numpy()
    suffix = np.append(np.cumprod(splits["split_ratio"].to_numpy()[::-1])[::-1], 1.0)
    later = suffix[np.searchsorted(ex, silver["day"].to_numpy(), side="right")]
    silver["close_latest_basis"] = silver["close"] / later
    joined = fixed.merge(silver, on="day", how="left")
    close_ok = np.isclose(joined["close_latest_basis"], joined["Close"], rtol=TOLERANCE, atol=0)
    adj_ok = np.isclose(joined["adj_close"], joined["Adj Close"], rtol=TOLERANCE, atol=0)
    present = joined["close"].notna()
    equal = present & close_ok & adj_ok
    # a row silver repaired where the maintainers' file keeps the provider's number: rescaled, or
    # its Adj Close recomputed from the repaired actions while the fixed file keeps the served
    # one (SAND: Yahoo's step for its phantom dividend). Different, but with a reason on the row
    # and the original in silver.bar_repairs, not silently.
    reason = joined["repair_reason"].fillna("")
    rescaled = reason.str.contains("unit_100x|split_unapplied")
    kept_served = np.isclose(
        joined["Adj Close"], joined["served_adj_close"], rtol=TOLERANCE, atol=0
    )
    recomputed = reason.str.contains("adj_close_recomputed") & close_ok & kept_served
    explained = present & ~equal & (rescaled | recomputed)
    silent = present & ~equal & ~explained
    return int(equal.sum()), int(explained.sum()), int(silent.sum()), len(fixed)


def refused(path: Path, error: Exception) -> FileResult:
    """A file the csv source refuses (intraday bars): counted, and failed if it is a pair."""
    match = FILE_PATTERN.match(path.name)
    assert match is not None
    control = not path.with_name(path.name.replace(".csv", "-fixed.csv")).exists()
    rows = sum(1 for _ in path.open()) - 1
    return FileResult(
        file=path.name,
        symbol=yahoo_symbol(match["ticker"]),
        interval=match["interval"],
        control=control,
        input_rows=rows,
        silver_rows=0,
        quarantined=0,
        repaired=0,
        widened=0,
        dividend_repairs=0,
        equal=None if control else 0,
        repaired_beyond=None if control else 0,
        different=None if control else 0,
        compared=None if control else rows,
        reasons=f"refused by the csv source: {str(error).rsplit('/', 1)[-1]}",
        refused=True,
    )


def case_switches(path: Path) -> RepairSwitches:
    """The repair kinds the file's case is about: bar rescaling off for the dividend cases."""
    match = FILE_PATTERN.match(path.name)
    if match is not None and match["case"] in DIVIDEND_CASES:
        return RepairSwitches(unit_100x=False, split_unapplied=False)
    return RepairSwitches()


def run_all(
    directory: Path, switches: RepairSwitches | None = None, *, all_repairs: bool = False
) -> list[FileResult]:
    """Every fixture file of `directory`: with `switches` if given, else all repairs on with
    `all_repairs`, else the repair kinds of each file's case (`case_switches`)."""
    files = sorted(
        p for p in directory.glob("*.csv") if FILE_PATTERN.match(p.name) and "-fixed" not in p.name
    )
    results = []
    for path in files:
        chosen = switches or (RepairSwitches() if all_repairs else case_switches(path))
        try:
            results.append(run_file(path, chosen))
        except PayloadFormatError as exc:
            results.append(refused(path, exc))
    return results


def table(results: list[FileResult]) -> str:
    lines = [
        "| file | symbol | rows | silver | quarantined | re-scaled bars | widened ranges "
        "| repaired dividends | equal to fixed | repaired beyond fixed | silently different "
        "| result | quarantine reasons |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        equal = "control" if r.control else f"{r.equal}/{r.compared}"
        different = "-" if r.control else str(r.different)
        beyond = "-" if r.control else str(r.repaired_beyond)
        lines.append(
            f"| {r.file} | {r.symbol} | {r.input_rows} | {r.silver_rows} | {r.quarantined} "
            f"| {r.repaired} | {r.widened} | {r.dividend_repairs} | {equal} | {beyond} | {different} "
            f"| {'PASS' if r.passed else 'FAIL'} | {r.reasons or '-'} |"
        )
    pairs = [r for r in results if not r.control]
    controls = [r for r in results if r.control]
    lines += [
        "",
        f"pairs fully equal: {sum(r.passed for r in pairs)}/{len(pairs)} "
        f"({sum(r.passed for r in pairs) / max(len(pairs), 1):.0%}); "
        f"controls unchanged: {sum(r.passed for r in controls)}/{len(controls)}; "
        f"input rows = silver + quarantined: {sum(r.reconciled for r in results)}/{len(results)} "
        f"({sum(r.refused for r in results)} refused whole by the csv source); "
        f"pairs whose only differences are rows silver repaired (with the reason on the row) "
        f"where the maintainers' file keeps the provider's number: {sum(bool(r.repaired_beyond) and not r.different for r in pairs)}; "
        f"rows silently different: {sum(r.different or 0 for r in pairs)} in "
        f"{sum(bool(r.different) for r in pairs)} pair(s)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import sys

    args = sys.argv[1:] if argv is None else argv
    all_repairs = "--all-repairs" in args
    args = [a for a in args if a != "--all-repairs"]
    directory = Path(args[0]) if args else default_fixtures_dir()
    if not directory.is_dir():
        print(f"no fixtures at {directory} (expected ../shared/real_data/yfinance_tests_data)")
        return 2
    started = dt.datetime.now()
    print(table(run_all(directory, all_repairs=all_repairs)))
    print(f"\n({(dt.datetime.now() - started).total_seconds():.1f} s)")
    return 0
