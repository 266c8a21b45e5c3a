"""CSV files in Yahoo's export format, one `<TICKER>.csv` per symbol (MARKETFLOW_CSV_DIR).

Columns: `Date,Open,High,Low,Close,Volume`, usually `Adj Close`, optionally `Dividends` and
`Stock Splits`. The payload keeps every cell as the text in the file (the purest "unchanged");
bronze does the typing, so a bad number becomes a rejected row in silver, not a crash. A file
that cannot be read as this format at all (no header, missing columns, a Date that is not one
instant) is that ticker's failure in `Payload.errors`, naming the file, line and field; the other
tickers' files still land.

The fetch time is the time the files are read: reading is the fetch, so a corrected file always
wins over an earlier read of the old one, whatever its modification time (a copy with `cp -p`, a
restore from backup). Each file's modification time and sha256 are recorded in the request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from marketflow_assets.sources.base import (
    TICKER_COLUMN,
    BarsQuery,
    MarketDataSource,
    Payload,
    PayloadFormatError,
    ProviderWindowError,
)
from marketflow_assets.transforms.payloads import bar_dates, bar_time_problems

REQUIRED_COLUMNS = ("Date", "Open", "High", "Low", "Close", "Volume")
OPTIONAL_COLUMNS = ("Adj Close", "Dividends", "Stock Splits")
# A file this long with every date 5+ days from the next is weekly/monthly, not a sparse daily one
MIN_ROWS_FOR_PERIOD_CHECK = 8


@dataclass
class CsvSource(MarketDataSource):
    directory: Path
    name: str = "csv"

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def path_for(self, ticker: str) -> Path:
        return self.directory / f"{ticker}.csv"

    def read_file(self, ticker: str) -> tuple[pd.DataFrame, dict] | None:
        """The whole file as text cells plus what identifies this version of it (modification
        time, sha256), or None if there is no file."""
        path = self.path_for(ticker)
        if not path.is_file():
            return None
        data = path.read_bytes()
        try:
            frame = pd.read_csv(
                io.BytesIO(data), dtype=str, keep_default_na=False, skipinitialspace=True
            )
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
        problems = bar_time_problems(frame["Date"])
        if problems.notna().any():
            row = int(problems.notna().to_numpy().argmax())
            raise PayloadFormatError(
                f"{path}, line {row + 2}, field Date: {frame['Date'].iloc[row]!r} "  # header: 1
                f"{problems.iloc[row]}"
            )
        dates = bar_dates(frame["Date"].str.strip())
        # A daily file has one row per date; several times on one date is an intraday export
        # (a single timestamped row, e.g. `2024-06-06T15:30:00Z`, is that date's bar).
        times = frame["Date"].str.strip().str.slice(11, 19)
        intraday = times.groupby(dates.to_numpy()).transform("nunique").to_numpy() > 1
        if intraday.any():
            line = int(intraday.argmax()) + 2  # header: 1
            raise PayloadFormatError(
                f"{path}, line {line}, field Date: {frame['Date'].iloc[line - 2]!r} is an intraday "
                "bar (several times on one date); the csv source serves daily bars (one row per "
                "date)"
            )
        # ... and consecutive dates 5+ days apart throughout is a weekly or monthly export: each
        # row spans several sessions (its date is the period's first day, perhaps a holiday)
        days = np.sort(dates.dropna().unique())
        if (
            len(days) >= MIN_ROWS_FOR_PERIOD_CHECK
            and (np.diff(days) >= np.timedelta64(5, "D")).all()
        ):
            raise PayloadFormatError(
                f"{path}, line 2, field Date: {frame['Date'].iloc[0]!r}: every date is 5 or more "
                "days from the next, a weekly or monthly export; the csv source serves daily bars "
                "(one row per session)"
            )
        version = {
            "modified_at": dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).isoformat(),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        frame.insert(0, TICKER_COLUMN, ticker)
        return frame.assign(_date=dates.dt.date), version

    def fetch_bars(self, query: BarsQuery) -> Payload:
        if query.interval != "1d":
            raise ProviderWindowError("the csv source serves daily bars only")
        fetched_at = self.now()
        frames, errors, files = [], {}, {}
        for ticker in query.tickers:
            try:
                read = self.read_file(ticker)
            except PayloadFormatError as exc:  # this ticker's failure, not the whole set's
                errors[ticker] = str(exc)
                continue
            if read is None:
                errors[ticker] = f"no file {self.path_for(ticker)}"
                continue
            frame, files[ticker] = read
            rows = frame[(frame["_date"] >= query.start) & (frame["_date"] <= query.end)]
            if rows.empty:
                errors[ticker] = (
                    f"{self.path_for(ticker)} has no rows in {query.start}..{query.end}"
                )
                continue
            frames.append(rows.drop(columns="_date"))
        frame = (
            pd.concat(frames, ignore_index=True)
            if frames
            else pd.DataFrame(columns=[TICKER_COLUMN, *REQUIRED_COLUMNS])
        )
        return Payload(
            source=self.name,
            dataset="daily_bars",
            request={**query.describe(), "directory": str(self.directory), "files": files},
            fetched_at=fetched_at,
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
