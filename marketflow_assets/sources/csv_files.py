"""CSV files in Yahoo's export format, one `<TICKER>.csv` per symbol (MARKETFLOW_CSV_DIR).

Columns: `Date,Open,High,Low,Close,Volume`, usually `Adj Close`, optionally `Dividends` and
`Stock Splits`. The payload keeps every cell as the text in the file (the purest "unchanged");
bronze does the typing, so a bad number becomes a rejected row, not a crash. A file that cannot
be read as this format at all (no header, missing columns, unparseable dates) raises
`PayloadFormatError` naming the file.

A file is a snapshot: its modification time stands in for the fetch time, which gives Yahoo's
as-of semantics to split-adjusted exports.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from marketflow_assets.sources.base import (
    TICKER_COLUMN,
    BarsQuery,
    MarketDataSource,
    Payload,
    PayloadFormatError,
    ProviderWindowError,
)

REQUIRED_COLUMNS = ("Date", "Open", "High", "Low", "Close", "Volume")
OPTIONAL_COLUMNS = ("Adj Close", "Dividends", "Stock Splits")


@dataclass
class CsvSource(MarketDataSource):
    directory: Path
    name: str = "csv"

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def path_for(self, ticker: str) -> Path:
        return self.directory / f"{ticker}.csv"

    def read_file(self, ticker: str) -> tuple[pd.DataFrame, dt.datetime] | None:
        """The whole file as text cells plus its snapshot time, or None if there is no file."""
        path = self.path_for(ticker)
        if not path.is_file():
            return None
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise PayloadFormatError(f"{path}: not a readable CSV file ({exc})") from exc
        frame.columns = [str(c).strip() for c in frame.columns]
        if "Date" not in frame.columns and "Datetime" in frame.columns:
            frame = frame.rename(columns={"Datetime": "Date"})  # yfinance's tz-aware export
        missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
        if missing:
            raise PayloadFormatError(
                f"{path}: missing column(s) {', '.join(missing)}; expected Yahoo's export format "
                f"{','.join(REQUIRED_COLUMNS)} (+ optional {','.join(OPTIONAL_COLUMNS)})"
            )
        dates = pd.to_datetime(frame["Date"].str.slice(0, 10), format="%Y-%m-%d", errors="coerce")
        if dates.isna().any():
            line = int(dates.isna().to_numpy().argmax()) + 2  # header is line 1
            raise PayloadFormatError(
                f"{path}, line {line}: Date {frame['Date'].iloc[line - 2]!r} is not YYYY-MM-DD"
            )
        times = frame["Date"].str.slice(11, 19)
        intraday = (times != "") & (times != "00:00:00")
        if intraday.any():
            line = int(intraday.to_numpy().argmax()) + 2
            raise PayloadFormatError(
                f"{path}, line {line}: {frame['Date'].iloc[line - 2]!r} is an intraday bar; the "
                "csv source serves daily bars (one row per date)"
            )
        snapshot = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
        frame.insert(0, TICKER_COLUMN, ticker)
        return frame.assign(_date=dates.dt.date), snapshot

    def fetch_bars(self, query: BarsQuery) -> Payload:
        if query.interval != "1d":
            raise ProviderWindowError("the csv source serves daily bars only")
        frames, errors, snapshots = [], {}, []
        for ticker in query.tickers:
            read = self.read_file(ticker)
            if read is None:
                errors[ticker] = f"no file {self.path_for(ticker)}"
                continue
            frame, snapshot = read
            rows = frame[(frame["_date"] >= query.start) & (frame["_date"] <= query.end)]
            if rows.empty:
                errors[ticker] = (
                    f"{self.path_for(ticker)} has no rows in {query.start}..{query.end}"
                )
                continue
            frames.append(rows.drop(columns="_date"))
            snapshots.append(snapshot)
        frame = (
            pd.concat(frames, ignore_index=True)
            if frames
            else pd.DataFrame(columns=[TICKER_COLUMN, *REQUIRED_COLUMNS])
        )
        return Payload(
            source=self.name,
            dataset="daily_bars",
            request={**query.describe(), "directory": str(self.directory)},
            # The newest snapshot among the files read: the as-of time of this payload.
            fetched_at=max(snapshots) if snapshots else self.now(),
            frame=frame,
            errors=errors,
            provider_calls=len(query.tickers),
        )

    def fetch_profiles(self, tickers: tuple[str, ...]) -> Payload:
        """CSV exports carry no reference data: a minimal profile per ticker that has a file."""
        records, errors = {}, {}
        for ticker in tickers:
            if self.path_for(ticker).is_file():
                records[ticker] = {
                    "symbol": ticker,
                    "quoteType": "EQUITY",
                    "currency": "USD",
                    "exchangeTimezoneName": "America/New_York",
                }
            else:
                errors[ticker] = f"no file {self.path_for(ticker)}"
        return Payload(
            source=self.name,
            dataset="company_profiles",
            request={"tickers": list(tickers), "directory": str(self.directory)},
            fetched_at=self.now(),
            frame=pd.DataFrame(),
            records=records,
            errors=errors,
            provider_calls=0,
        )
