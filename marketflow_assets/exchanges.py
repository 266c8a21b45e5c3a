"""Which exchange a ticker trades on, in which currency and price unit, and that exchange's sessions.

One table (`SUFFIX_EXCHANGES`) maps a Yahoo suffix to the exchange's ISO 10383 MIC (the
`exchange_calendars` name), its currency and the unit Yahoo quotes prices in. A ticker without a
suffix trades in the US: XNYS sessions (NASDAQ and NYSE share them), USD, whole dollars.

    .L  XLON GBP pence (GBp)     .T  XTKS JPY        .HK XHKG HKD        .NS/.BO XBOM INR
    .TO XTSE CAD                 .V  XTSE CAD        .AX XASX AUD        .DE XETR EUR
    .PA XPAR EUR                 .MI XMIL EUR        .MC XMAD EUR        .AS XAMS EUR
    .ST XSTO SEK                 .TA XTAE ILS agorot (ILA)                .JO XJSE ZAR cents (ZAc)
    .IL XLON USD (London international order book)                      .SW XSWX CHF

Daily partitions are the union of the sessions of every exchange the universe trades on
(`union_sessions`): exactly the XNYS sessions for a US-only universe.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from marketflow_assets.calendar import EXCHANGE, exchange_calendar
from marketflow_assets.tickers import InvalidTickerError


@dataclass(frozen=True)
class Listing:
    mic: str  # ISO 10383 market identifier = exchange_calendars calendar name
    currency: str  # ISO 4217 currency of the listing
    price_unit: str  # what one unit of a quoted price is: the currency, or its 1/100 subunit
    price_scale: float  # prices / price_scale = amounts in `currency` (100 for pence, cents)


class UnknownExchangeError(InvalidTickerError):
    """A ticker's Yahoo suffix is not in `SUFFIX_EXCHANGES`: its sessions are unknown."""


US_LISTING = Listing(EXCHANGE, "USD", "USD", 1.0)
SUFFIX_EXCHANGES: dict[str, Listing] = {
    "L": Listing("XLON", "GBP", "GBp", 100.0),
    "IL": Listing("XLON", "USD", "USD", 1.0),
    "T": Listing("XTKS", "JPY", "JPY", 1.0),
    "HK": Listing("XHKG", "HKD", "HKD", 1.0),
    "NS": Listing("XBOM", "INR", "INR", 1.0),
    "BO": Listing("XBOM", "INR", "INR", 1.0),
    "TO": Listing("XTSE", "CAD", "CAD", 1.0),
    "V": Listing("XTSE", "CAD", "CAD", 1.0),
    "AX": Listing("XASX", "AUD", "AUD", 1.0),
    "DE": Listing("XETR", "EUR", "EUR", 1.0),
    "PA": Listing("XPAR", "EUR", "EUR", 1.0),
    "MI": Listing("XMIL", "EUR", "EUR", 1.0),
    "MC": Listing("XMAD", "EUR", "EUR", 1.0),
    "AS": Listing("XAMS", "EUR", "EUR", 1.0),
    "ST": Listing("XSTO", "SEK", "SEK", 1.0),
    "TA": Listing("XTAE", "ILS", "ILA", 100.0),
    "JO": Listing("XJSE", "ZAR", "ZAc", 100.0),
    "SW": Listing("XSWX", "CHF", "CHF", 1.0),
}


# Each exchange's time zone (exchange_calendars' `tz`, checked by the tests), without building its
# calendar: dates on an exchange's clock in SQL and pandas.
MIC_TIMEZONES: dict[str, str] = {
    "XNYS": "America/New_York",
    "XLON": "Europe/London",
    "XTKS": "Asia/Tokyo",
    "XHKG": "Asia/Hong_Kong",
    "XBOM": "Asia/Kolkata",
    "XTSE": "America/Toronto",
    "XASX": "Australia/Sydney",
    "XETR": "Europe/Berlin",
    "XPAR": "Europe/Paris",
    "XMIL": "Europe/Rome",
    "XMAD": "Europe/Madrid",
    "XAMS": "Europe/Amsterdam",
    "XSTO": "Europe/Stockholm",
    "XTAE": "Asia/Tel_Aviv",
    "XJSE": "Africa/Johannesburg",
    "XSWX": "Europe/Zurich",
}


def listing_of(ticker: str) -> Listing:
    """The listing a Yahoo symbol names by its suffix (`AZN.L` -> XLON); US without one.
    An unknown suffix is a clear error rather than a silent NYSE calendar."""
    base, dot, suffix = ticker.rpartition(".")
    if not dot or not base:
        return US_LISTING
    if suffix.upper() not in SUFFIX_EXCHANGES:
        raise UnknownExchangeError(
            f"{ticker}: unknown exchange suffix .{suffix}; known: "
            + ", ".join(f".{s}" for s in sorted(SUFFIX_EXCHANGES))
        )
    return SUFFIX_EXCHANGES[suffix.upper()]


def exchange_sessions(mic: str) -> np.ndarray:
    """Sorted session dates (datetime64[D]) of one exchange."""
    return exchange_calendar(mic).sessions


def mics_of(tickers: Iterable[str]) -> set[str]:
    """The exchanges (MICs) of `tickers`, skipping unknown suffixes (named elsewhere: the universe
    refuses them, bronze fails naming the ticker)."""
    mics = set()
    for ticker in set(tickers):  # per distinct ticker, not per row
        try:
            mics.add(listing_of(ticker).mic)
        except UnknownExchangeError:
            continue
    return mics


def ticker_mic_sql(column: str = "ticker") -> str:
    """SQL expression: the MIC of the ticker in `column` by its Yahoo suffix, exactly as
    `listing_of` (no suffix: XNYS); NULL for an unknown suffix."""
    cases = " ".join(f"WHEN '{s}' THEN '{x.mic}'" for s, x in SUFFIX_EXCHANGES.items())
    return (
        f"(CASE WHEN NOT regexp_matches({column}, '^.+[.][^.]*$') THEN '{US_LISTING.mic}' "
        f"ELSE CASE upper(regexp_extract({column}, '[.]([^.]*)$', 1)) {cases} END END)"
    )


def ticker_timezone_sql(column: str = "ticker") -> str:
    """SQL expression: the IANA time zone of the exchange of the ticker in `column` (New York's
    for an unknown suffix, which never reaches silver: bronze refuses it)."""
    cases = " ".join(f"WHEN '{mic}' THEN '{tz}'" for mic, tz in MIC_TIMEZONES.items())
    return f"(CASE {ticker_mic_sql(column)} {cases} ELSE '{MIC_TIMEZONES[EXCHANGE]}' END)"


def own_exchange_dates(tickers: pd.Series, ts_utc: pd.Series) -> pd.Series:
    """Per UTC timestamp: its date on the clock of its ticker's exchange (datetime64, midnight),
    so a Tokyo minute at 00:00 UTC is that Tokyo morning's date, not New York's evening before.
    One conversion per exchange time zone."""
    mics = tickers.map({t: listing_of(t).mic for t in tickers.unique()})
    out = pd.Series(pd.NaT, index=ts_utc.index, dtype="datetime64[ns]")
    for mic in mics.unique():
        rows = (mics == mic).to_numpy()
        local = ts_utc[rows].dt.tz_convert(MIC_TIMEZONES[mic])
        out[rows] = local.dt.tz_localize(None).dt.normalize().to_numpy()
    return out


def union_sessions(mics: frozenset[str] | set[str]) -> np.ndarray:
    """Dates on which at least one of the exchanges is open: the daily partition keys of a
    universe trading on `mics` (exactly the XNYS sessions for {"XNYS"})."""
    if not mics:
        return exchange_sessions(EXCHANGE)
    return np.unique(np.concatenate([exchange_sessions(m) for m in sorted(mics)]))


def own_session_dates(tickers: pd.Series, bar_dates: pd.Series) -> pd.DataFrame:
    """Per bar: its ticker's exchange (MIC), and the session of that exchange on or before the
    bar date (NaT before the calendar). A bar dated on a non-session has session != bar date."""
    mics = tickers.map({t: listing_of(t).mic for t in tickers.unique()})
    values = pd.to_datetime(bar_dates).to_numpy().astype("datetime64[D]")
    out = np.full(len(values), np.datetime64("NaT"), dtype="datetime64[D]")
    for mic in mics.unique():  # one vectorised lookup per exchange, not per row
        rows = (mics == mic).to_numpy()
        sessions = exchange_sessions(mic)
        idx = np.searchsorted(sessions, values[rows], side="right") - 1
        out[rows] = np.where(idx >= 0, sessions[np.clip(idx, 0, None)], np.datetime64("NaT"))
    return pd.DataFrame(
        {"mic": mics.to_numpy(), "session_date": out.astype("datetime64[ns]")}, index=tickers.index
    )


def listings_frame() -> pd.DataFrame:
    """The suffix table as rows (suffix '' = a US listing without a suffix), for SQL joins."""
    rows = [("", US_LISTING), *SUFFIX_EXCHANGES.items()]
    return pd.DataFrame(
        [(suffix, x.mic, x.currency, x.price_unit, x.price_scale) for suffix, x in rows],
        columns=["suffix", "mic", "currency", "price_unit", "price_scale"],
    )
