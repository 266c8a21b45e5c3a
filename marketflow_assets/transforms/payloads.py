"""From provider payloads (Yahoo-shaped, any source) to typed rows. Vectorised, no row loops.

This is the single "transform" step of the source interface: every source serves Yahoo's
columns, so one function types them all. Cells that are not numbers become NULL here and are
rejected (with the raw object named) in silver; a payload missing a required column is a
`PayloadSchemaError` naming the column and the raw objects, raised before anything is written.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from marketflow_assets.calendar import EXCHANGE_TZ, xnys
from marketflow_assets.exchanges import own_exchange_dates, own_session_dates
from marketflow_assets.sources.base import (
    DAILY_PAYLOAD_COLUMNS,
    INTRADAY_PAYLOAD_COLUMNS,
    TICKER_COLUMN,
)

_DAILY_NUMERIC = {
    "Open": "open",
    "High": "high",
    "Low": "low",
    "Close": "close",
    "Adj Close": "adj_close",
    "Volume": "volume",
    "Dividends": "dividends",
    "Stock Splits": "stock_splits",
}
_INTRADAY_NUMERIC = {
    "Open": "open",
    "High": "high",
    "Low": "low",
    "Close": "close",
    "Volume": "volume",
}
DAILY_REQUIRED = ("Date", "Open", "High", "Low", "Close", "Volume")
INTRADAY_REQUIRED = INTRADAY_PAYLOAD_COLUMNS
LINEAGE_RENAMES = {
    "_source": "source",
    "_fetch_id": "fetch_id",
    "_fetched_at": "fetched_at",
    "_object_key": "raw_object",
}


class PayloadSchemaError(ValueError):
    """A payload lacks a column the transform needs; names the column and the objects."""


_OFFSET = r"[+-]\d\d:?\d\d$|Z$"
# A bar time as providers and exports write it: a date, optionally a time, optionally an offset.
_BAR_TIME_TEXT = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?"
)


def bar_time_problems(values: pd.Series) -> pd.Series:
    """Per cell of provider/export time text: None if `bar_timestamps` reads it as exactly one
    instant, else why not (trailing text, not a calendar date, a local time that does not exist
    or is ambiguous at a DST change and carries no offset). Vectorised; date-only cells (the
    common case) take the fast path."""
    codes, distinct = pd.factorize(values.astype(str))  # judge each distinct text once
    text = pd.Series(distinct, dtype=object).str.strip()
    why = pd.Series(None, index=text.index, dtype=object)
    shaped = text.str.fullmatch(_BAR_TIME_TEXT)
    why[~shaped] = "is not YYYY-MM-DD[ HH:MM[:SS]][+HH:MM]"
    date_only = shaped & (text.str.len() == 10)
    dates = pd.to_datetime(text[date_only], format="%Y-%m-%d", errors="coerce")
    why[dates.index[dates.isna()]] = "is not a calendar date"
    timed = shaped & ~date_only
    if timed.any():
        ts = bar_timestamps(text[timed])
        why[ts.index[ts.isna()]] = (
            "is not one instant: no such date/time, or a New York local time that does not "
            "exist or is ambiguous at a DST change (add an offset such as -04:00)"
        )
    return pd.Series(why.to_numpy()[codes], index=values.index, dtype=object)


def bar_timestamps(values: pd.Series) -> pd.Series:
    """Provider timestamps as UTC. Timezone-aware values are converted; text or naive values
    (CSV exports) are dates or times in exchange time."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    # Parse each distinct text once: a file repeats its dates across tickers, and localizing
    # to a zoneinfo zone costs per element (100k rows: seconds, vs milliseconds for the
    # distinct dates).
    codes, distinct = pd.factorize(values.astype(str))
    text = pd.Series(distinct, dtype=object)
    parsed = pd.to_datetime(text.str.slice(0, 19), errors="coerce", format="mixed")
    aware = pd.to_datetime(text, errors="coerce", utc=True, format="mixed")
    # An offset with or without a colon (`+00:00`, `+0000`) or `Z` is honoured.
    has_offset = text.str.contains(_OFFSET, regex=True)
    local = parsed.dt.tz_localize(EXCHANGE_TZ, ambiguous="NaT", nonexistent="NaT").dt.tz_convert(
        "UTC"
    )
    utc = aware.where(has_offset, local).array
    return pd.Series(utc.take(codes), index=values.index)


def exchange_dates(ts_utc: pd.Series) -> pd.Series:
    """Dates in exchange time (datetime64, midnight) of UTC timestamps."""
    return ts_utc.dt.tz_convert(EXCHANGE_TZ).dt.tz_localize(None).dt.normalize()


def bar_dates(values: pd.Series, tickers: pd.Series | None = None) -> pd.Series:
    """Exchange-time date of each provider timestamp (a daily bar *is* its date); text that
    only holds a date is read as that date. With `tickers`, a timezone-aware instant is dated on
    its own ticker's exchange clock: a column mixing exchanges keeps the instants but not each
    row's zone (pandas and Arrow give the whole column one), so the zone comes from the ticker."""
    if isinstance(values.dtype, pd.DatetimeTZDtype) and tickers is not None:
        return own_exchange_dates(tickers.astype(str), values.dt.tz_convert("UTC"))
    if isinstance(values.dtype, pd.DatetimeTZDtype) and str(values.dt.tz) != "UTC":
        # Stamped at midnight in the exchange's own zone (a Tokyo bar 2023-04-14 00:00+09:00):
        # the wall date is the bar's date, whatever New York's is.
        return values.dt.tz_localize(None).dt.normalize()
    dates = exchange_dates(bar_timestamps(values))
    if not isinstance(values.dtype, pd.DatetimeTZDtype):
        # Text with a UTC offset is the exchange's own local time (a Tokyo daily bar is
        # "2023-04-14 00:00:00+09:00"): its date is the one written, whatever New York's is.
        text = values.astype(str)
        written = pd.to_datetime(text.str.slice(0, 10), errors="coerce", format="%Y-%m-%d")
        dates = written.where(text.str.contains(r"[+-]\d\d:\d\d$", regex=True), dates)
    unparsed = dates.isna()
    if not unparsed.any():  # e.g. every timezone-aware payload: no text to look at
        return dates
    text_dates = pd.to_datetime(
        values[unparsed].astype(str).str.slice(0, 10), errors="coerce", format="%Y-%m-%d"
    )
    return dates.where(~unparsed, text_dates)


def iso_dates(values: pd.Series) -> pd.Series:
    """`values.dt.strftime("%Y-%m-%d")` (NaT: NaN), formatted once per distinct date: a range
    of bars holds a few thousand dates in a million rows."""
    codes, uniques = pd.factorize(values)
    text = np.asarray(pd.DatetimeIndex(uniques).strftime("%Y-%m-%d"), dtype=object)
    out = np.full(len(values), np.nan, dtype=object)
    known = codes >= 0
    out[known] = text[codes[known]]
    return pd.Series(out, index=values.index, name=values.name)


def session_dates(bar_dates: pd.Series, tickers: pd.Series | None = None) -> pd.Series:
    """Session partition of each bar date: itself if a session, else the session before. With
    `tickers`, each on its own ticker's exchange (a London bar on the 4th of July is the 4th);
    without, on the NYSE's."""
    if tickers is not None:
        return own_session_dates(tickers.astype(str), bar_dates)["session_date"]
    cal = xnys()
    values = bar_dates.to_numpy().astype("datetime64[D]")
    idx = np.searchsorted(cal.sessions, values, side="right") - 1
    out = cal.sessions[np.clip(idx, 0, None)].astype("datetime64[ns]")
    return pd.Series(np.where(idx >= 0, out, np.datetime64("NaT")), index=bar_dates.index)


def minute_session_dates(tickers: pd.Series, values: pd.Series) -> pd.Series:
    """Session of each one-minute bar time, on its own ticker's exchange clock and calendar."""
    tickers = tickers.astype(str)
    return session_dates(own_exchange_dates(tickers, bar_timestamps(values)), tickers)


def missing_columns(frame: pd.DataFrame, required: tuple[str, ...]) -> list[str]:
    return [c for c in required if c not in frame.columns]


def check_payload_columns(frame: pd.DataFrame, interval: str) -> None:
    required = DAILY_REQUIRED if interval == "1d" else INTRADAY_REQUIRED
    missing = missing_columns(frame, required)
    if missing:
        objects = sorted(frame["_object_key"].unique())[:5] if "_object_key" in frame else []
        raise PayloadSchemaError(
            f"{interval} payload is missing column(s) {', '.join(missing)} "
            f"(objects: {', '.join(objects) or 'n/a'}); the raw objects are kept as landed"
        )


def type_bars(raw: pd.DataFrame, interval: str) -> pd.DataFrame:
    """Typed bronze rows from raw payload rows (+ lineage columns)."""
    check_payload_columns(raw, interval)
    time_col = "Date" if interval == "1d" else "Datetime"
    numeric = _DAILY_NUMERIC if interval == "1d" else _INTRADAY_NUMERIC
    ts = bar_timestamps(raw[time_col])
    tickers = raw[TICKER_COLUMN].astype(str)
    # A minute's date is on its own exchange's clock (a Tokyo 09:00 minute is that Tokyo date).
    bar_date = (
        bar_dates(raw[time_col], tickers) if interval == "1d" else own_exchange_dates(tickers, ts)
    )
    out = pd.DataFrame(
        {
            "ticker": tickers,
            "ts": ts,
            "interval": interval,
            "bar_date": bar_date,
            "session_date": own_session_dates(tickers, bar_date)["session_date"],
        }
    )
    for source_col, name in numeric.items():
        out[name] = (
            pd.to_numeric(raw[source_col], errors="coerce").astype("float64")
            if source_col in raw
            else np.nan
        )
    for lineage, name in LINEAGE_RENAMES.items():
        # `.array`: positional like `.to_numpy()`, without turning `_fetched_at` (timezone-aware)
        # into one Timestamp object per row.
        out[name] = raw[lineage].array if lineage in raw else None
    return out


def latest_fetch_rows(typed: pd.DataFrame) -> pd.DataFrame:
    """Per (ticker, ts, interval) keep the rows of the latest fetch: provider clock first, then
    landing order (fetch ids sort by landing time). Duplicates *within* that fetch are kept for
    silver to judge."""
    if typed.empty:
        return typed
    fetches = pd.unique(typed["fetch_id"])
    if len(fetches) == 1 and pd.notna(fetches[0]):
        # One fetch (a backfill's single request, a session's one poll): every row is its
        # latest, so the sort, grouping and per-row comparison below would keep them all.
        return typed.reset_index(drop=True)
    ordered = typed.sort_values(["fetched_at", "fetch_id"], kind="stable")
    # dropna=False: a row whose time did not parse stays (silver rejects it), never vanishes.
    winner = ordered.groupby(["ticker", "ts", "interval"], sort=False, dropna=False)[
        "fetch_id"
    ].transform("last")
    return ordered[ordered["fetch_id"] == winner].sort_index().reset_index(drop=True)


def corporate_action_events(frame: pd.DataFrame) -> list[dict]:
    """Dividend and split rows of one daily response, each with the previous row's close in
    the same as-of basis (the dividend factor needs it)."""
    has_actions = [c for c in ("Dividends", "Stock Splits") if c in frame.columns]
    if frame.empty or not has_actions:
        return []

    def numeric(column: str) -> pd.Series:
        if column not in frame.columns:
            return pd.Series(0.0, index=frame.index)
        return pd.to_numeric(frame[column], errors="coerce").fillna(0.0)

    dividends, splits = numeric("Dividends"), numeric("Stock Splits")
    is_event = (dividends > 0) | ((splits > 0) & (splits != 1))
    ts = bar_timestamps(frame["Date"])
    close = pd.to_numeric(frame["Close"], errors="coerce")
    # Only the columns used below: a copy of the whole response (and its sort) cost seconds.
    ordered = pd.DataFrame(
        {
            TICKER_COLUMN: frame[TICKER_COLUMN],
            "_ts": ts,
            "_close": close,
            # the provider's own adjustment ratio: its step at an ex-date is the dividend it
            # applied
            "_adj_ratio": pd.to_numeric(frame.get("Adj Close", close), errors="coerce") / close,
            "_open": pd.to_numeric(frame["Open"], errors="coerce"),
            "_row": np.arange(len(frame)),
        },
        index=frame.index,
    ).sort_values([TICKER_COLUMN, "_ts"], kind="stable")
    # the previous *valid* close: a row without prices (Yahoo's NaN rows) does not reset it
    valid = ordered.groupby(TICKER_COLUMN, sort=False)[["_close", "_adj_ratio"]].ffill()
    previous = valid.groupby(ordered[TICKER_COLUMN], sort=False).shift(1).reindex(frame.index)
    # the next row with prices: a dividend the provider dated a session early shows its drop
    # there; its date is computed for the event rows' next rows only (dates are per row)
    priced_rows = ordered[ordered["_close"].notna()]
    following = (
        priced_rows.groupby(TICKER_COLUMN, sort=False)[["_open", "_row"]]
        .shift(-1)
        .reindex(frame.index)
    )
    event_rows = frame[is_event]
    next_row = following.loc[is_event, "_row"]
    has_next = next_row.notna().to_numpy()
    nexts = frame.iloc[next_row[has_next].astype(np.int64).to_numpy()]
    next_date = pd.Series(pd.NaT, index=event_rows.index, dtype="datetime64[ns]")
    next_date[has_next] = bar_dates(nexts["Date"], nexts[TICKER_COLUMN]).to_numpy()
    events = pd.DataFrame(
        {
            "ticker": event_rows[TICKER_COLUMN],
            "date": bar_dates(event_rows["Date"], event_rows[TICKER_COLUMN]),
            "dividend": dividends[is_event],
            "split_ratio": splits[is_event].where(splits[is_event] > 0, 1.0),
            "prev_close": previous.loc[is_event, "_close"].astype("float64"),
            # evidence for dividend repairs (transforms/repairs/dividends.py)
            "open": pd.to_numeric(event_rows["Open"], errors="coerce").astype("float64"),
            "adj_ratio": ordered["_adj_ratio"].reindex(event_rows.index).astype("float64"),
            "prev_adj_ratio": previous.loc[is_event, "_adj_ratio"].astype("float64"),
            "close": close[is_event].astype("float64"),
            "next_open": following.loc[is_event, "_open"].astype("float64"),
            "next_date": next_date,
            "priced": close[is_event].notna(),
        }
    )
    # Formatted for the few event rows only (strftime over every bar of a 10-year response
    # took seconds).
    for column in ("date", "next_date"):
        events[column] = events[column].dt.strftime("%Y-%m-%d")
    # Records built from one Python list per column: `to_dict("records")` boxes each of the
    # ~17k events' twelve values one at a time (~1 s for a 10-year, 500-ticker response).
    columns = [
        events[name].astype(object).where(events[name].notna(), None).tolist()
        for name in events.columns
    ]
    return [dict(zip(events.columns, row, strict=True)) for row in zip(*columns, strict=True)]


__all__ = [
    "DAILY_PAYLOAD_COLUMNS",
    "PayloadSchemaError",
    "bar_dates",
    "bar_timestamps",
    "check_payload_columns",
    "corporate_action_events",
    "iso_dates",
    "latest_fetch_rows",
    "minute_session_dates",
    "session_dates",
    "type_bars",
]
