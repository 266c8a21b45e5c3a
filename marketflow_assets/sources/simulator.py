"""A deterministic, offline stand-in for Yahoo Finance (DESIGN.md, "Provider semantics").

Every number is a pure function of (seed, ticker, session): the same request gives the same
payload on any machine, and a ticker's history does not depend on which other tickers, dates or
clock a request used. What the simulator reproduces:

- a market: one market factor, a factor per sector, idiosyncratic noise; prices in dollars and
  cents, volumes in shares; listing dates, quarterly dividends and stock splits;
- Yahoo's as-of semantics: fetched at F, bar D's Close/OHLC are divided (and Volume multiplied)
  by every split with D < ex-date <= F; Adj Close also applies dividends CRSP-style; Dividends
  and Stock Splits sit on the ex-date row, dividends in the basis as of F;
- one-minute bars (regular hours, early closes, minute starts in exchange time) that aggregate
  exactly to the daily bar, only for the last 30 days and at most 7 days per request; the
  session in progress has a forming daily bar and a forming last minute;
- switchable faults: missing bars, duplicated rows, bad ticks, 100x price errors, HTTP 429s,
  unknown tickers (empty result);
- exchanges: a ticker trades on the exchange of its Yahoo suffix (`exchanges.listing_of`: `.L`
  London in pence, `.T` Tokyo, `.HK` Hong Kong, `.TO` Toronto, ...) on that exchange's own
  sessions and regular hours (holidays, early closes, Tokyo's and Hong Kong's lunch breaks), with
  Yahoo's exchange code, price unit and time zone in its profile. A suffix-less ticker is a US
  listing on the NYSE calendar, exactly as before.

The injectable clock (`now`) is the provider's: nothing after it is ever served.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import itertools
from dataclasses import dataclass, field, replace
from functools import cached_property
from importlib import resources

import numpy as np
import pandas as pd

from marketflow_assets.calendar import EXCHANGE, SessionCalendar, exchange_calendar
from marketflow_assets.exchanges import UnknownExchangeError, listing_of
from marketflow_assets.sources.base import (
    DAILY_PAYLOAD_COLUMNS,
    INTRADAY_LOOKBACK_DAYS,
    INTRADAY_MAX_DAYS_PER_REQUEST,
    INTRADAY_PAYLOAD_COLUMNS,
    TICKER_COLUMN,
    BarsQuery,
    MarketDataSource,
    Payload,
    ProviderWindowError,
    RateLimitError,
)

SOURCE_NAME = "simulator"
# Symbols not in the listings file are listed from this date, so synthetic universes
# (benchmarks) have full histories.
DEFAULT_LISTING = dt.date(2000, 1, 3)
# Split dates are drawn over a fixed horizon so they never depend on the real date.
SPLIT_HORIZON = dt.date(2030, 12, 31)
DIVIDEND_EVERY_SESSIONS = 63
GENERIC_SPLIT_RATIOS = (2.0, 3.0, 1.5, 4.0)
# Yahoo's exchange code and price level (a typical share price, in the quoted unit, relative to
# a US share) per exchange; a US listing is NYQ or NMS at 1.
YAHOO_EXCHANGE_CODES = {"XLON": "LSE", "XTKS": "JPX", "XHKG": "HKG", "XTSE": "TOR", "XBOM": "BSE"}
PRICE_LEVELS = {"XLON": 15.0, "XTKS": 40.0, "XHKG": 1.5}
SECTORS = (
    "Technology",
    "Communication Services",
    "Consumer Cyclical",
    "Financial Services",
    "Healthcare",
    "Consumer Defensive",
    "Energy",
    "Industrials",
    "Utilities",
    "Basic Materials",
    "Real Estate",
)


@dataclass(frozen=True)
class SimulatorFaults:
    """Fault switches. Probabilities are per (ticker, session) bar, or per request for 429s."""

    missing_bars: float = 0.0
    duplicates: float = 0.0
    bad_ticks: float = 0.0
    price_100x: float = 0.0
    rate_limit: float = 0.0
    unknown: frozenset[str] = frozenset()
    restatements: float = 0.0  # per (ticker, fiscal quarter): restated in a later fetch

    @classmethod
    def parse(cls, spec: str) -> SimulatorFaults:
        """`missing_bars=0.01,duplicates=0.01,bad_ticks=0.002,price_100x=0.001,rate_limit=0.2,
        unknown=FOO|BAR` (MARKETFLOW_SIMULATOR_FAULTS)."""
        faults = cls()
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, _, value = item.partition("=")
            name = name.strip()
            if name == "unknown":
                faults = replace(
                    faults,
                    unknown=frozenset(v.strip().upper() for v in value.split("|") if v.strip()),
                )
            elif name in {
                "missing_bars",
                "duplicates",
                "bad_ticks",
                "price_100x",
                "rate_limit",
                "restatements",
            }:
                try:
                    probability = float(value)
                except ValueError:
                    probability = -1.0
                if not 0.0 <= probability <= 1.0:
                    raise ValueError(
                        f"simulator fault {name}={value!r}: expected a probability in [0, 1]"
                    )
                faults = replace(faults, **{name: probability})
            else:
                raise ValueError(
                    f"unknown simulator fault {name!r}; expected missing_bars, duplicates, "
                    "bad_ticks, price_100x, rate_limit, restatements or unknown"
                )
        return faults


@dataclass(frozen=True)
class Listing:
    ticker: str
    name: str
    exchange: str
    currency: str
    quote_type: str
    sector: str | None
    industry: str | None
    listed: dt.date
    split_ratios: tuple[float, ...]
    dividend_yield: float


@dataclass
class TickerHistory:
    """Ground truth for one ticker over sessions[first:last] (indices into the calendar)."""

    ticker: str
    first: int  # calendar index of the first session
    sessions: np.ndarray  # datetime64[D]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray  # int64, traded shares
    dividend: np.ndarray  # traded $ per share on the ex-date, else 0
    split: np.ndarray  # ratio on the ex-date, else 1

    def __len__(self) -> int:
        return len(self.sessions)


@dataclass(frozen=True)
class _ExchangeClock:
    """Where the provider clock stands on one exchange's calendar."""

    opened: dt.date | None  # the latest session opened by now
    in_session: bool  # `opened` has not closed yet
    today: np.datetime64  # now's date in the exchange's zone (datetime64[D])

    @classmethod
    def at(cls, cal: SessionCalendar, now: dt.datetime) -> _ExchangeClock:
        opened = cal.latest_opened_session(now)
        return cls(
            opened,
            opened is not None and now < cal.close_utc(opened),
            np.datetime64(now.astimezone(cal.tz).date(), "D"),
        )


@dataclass(frozen=True)
class TickerCloses:
    """`TickerHistory`'s sessions, closes and actions (`SimulatorSource.closes`)."""

    sessions: np.ndarray  # datetime64[D]
    close: np.ndarray
    dividend: np.ndarray
    split: np.ndarray

    def __len__(self) -> int:
        return len(self.sessions)


@dataclass(frozen=True)
class _Bars:
    """Traded daily bars at some sessions of a `_Path`."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


@dataclass(frozen=True)
class _Path:
    """A ticker's drawn streams from listing through some session (`SimulatorSource._path`):
    everything sequential (the cumulated returns, the dividends, each of which depends on the
    price before it) is done; the bars are evaluated only at the sessions asked for, with the
    same operations as on the whole history, so every value is the same bit for bit."""

    ticker: str
    first: int  # calendar index of the first session
    sessions: np.ndarray  # datetime64[D]
    is_index: bool
    start_price: float
    base_volume: float
    log_ret: np.ndarray
    cum: np.ndarray  # np.cumsum(log_ret)
    events: np.ndarray  # rows of the dividend ex-dates, ascending
    dropped: np.ndarray  # [1.0, product of the drops through each event, in order]
    dividend: np.ndarray  # traded $ per share on the ex-date, else 0
    splits: np.ndarray  # ratio on the ex-date, else 1
    share_factor: np.ndarray  # np.cumprod(splits)
    seed: int

    def __len__(self) -> int:
        return len(self.sessions)

    @cached_property
    def noise(self) -> np.ndarray:
        """(n, 3) row-major standard normals (gap, upper wick, lower wick): session i always
        gets the same three draws, whatever n is. Drawn when bars are asked for (closes alone,
        as the statements use, do not need them)."""
        return _rng(self.seed, self.ticker, "bars").standard_normal((len(self), 3))

    @cached_property
    def volume_noise(self) -> np.ndarray:
        return _rng(self.seed, self.ticker, "volume").lognormal(0.0, 0.35, len(self))

    def closes(self, rows: np.ndarray) -> np.ndarray:
        value = self.start_price * np.exp(self.cum[rows])
        if self.events.size:  # np.cumprod of the drops: 1.0 between events, so exactly these
            value = value * self.dropped[np.searchsorted(self.events, rows, side="right")]
        return np.round(value / self.share_factor[rows], 2)

    def bars(self, rows: np.ndarray) -> _Bars:
        """The bars at `rows` (ascending row numbers)."""
        prev_rows = np.maximum(rows - 1, 0)  # session 0 opens from its own close
        priced = np.union1d(rows, prev_rows)
        closes = self.closes(priced)
        close = closes[np.searchsorted(priced, rows)]
        prev_close = closes[np.searchsorted(priced, prev_rows)]
        splits, dividend = self.splits[rows], self.dividend[rows]
        noise = self.noise[rows].T
        gap = noise[0] * (0.002 if self.is_index else 0.006)
        # On a split or dividend ex-date, the open continues from the re-based previous close.
        rebased_prev = (
            prev_close
            / splits
            * np.where(dividend > 0, 1 - dividend / np.maximum(prev_close, 1e-9), 1.0)
        )
        open_ = np.round(rebased_prev * np.exp(gap), 2)
        wick = np.abs(noise[1:]) * (0.003 if self.is_index else 0.008)
        high = np.round(np.maximum(open_, close) * np.exp(wick[0]), 2)
        low = np.round(np.minimum(open_, close) * np.exp(-wick[1]), 2)
        volume = np.round(
            self.base_volume
            * self.volume_noise[rows]
            * (1 + 25 * np.abs(self.log_ret[rows]))
            * self.share_factor[rows]
        ).astype(np.int64)
        return _Bars(open_, high, low, close, volume)


def _stable_int(*parts: object) -> int:
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng(_stable_int(*parts))


@dataclass
class SimulatorSource(MarketDataSource):
    seed: int = 0
    clock: dt.datetime | None = None  # None: real time
    faults: SimulatorFaults = field(default_factory=SimulatorFaults)
    name: str = SOURCE_NAME

    def __post_init__(self) -> None:
        self._requests = 0
        self._factor_cache: dict[tuple[str, ...], np.ndarray] = {}
        self._scaled_factor_cache: dict[tuple, np.ndarray] = {}

    # -- clock ---------------------------------------------------------------------------
    def now(self) -> dt.datetime:
        return self.clock if self.clock is not None else dt.datetime.now(dt.UTC)

    def set_clock(self, moment: dt.datetime) -> None:
        self.clock = moment.astimezone(dt.UTC)

    # -- reference data ------------------------------------------------------------------
    @cached_property
    def listings(self) -> dict[str, Listing]:
        text = (
            resources.files("marketflow_assets.data").joinpath("simulator_listings.csv").read_text()
        )
        out = {}
        for row in csv.DictReader(text.splitlines()):
            out[row["ticker"]] = Listing(
                ticker=row["ticker"],
                name=row["name"],
                exchange=row["exchange"],
                currency=row["currency"],
                quote_type=row["quote_type"],
                sector=row["sector"] or None,
                industry=row["industry"] or None,
                listed=dt.date.fromisoformat(row["listed"]),
                split_ratios=tuple(float(r) for r in row["split_ratios"].split("|") if r),
                dividend_yield=float(row["dividend_yield"] or 0),
            )
        return out

    def listing(self, ticker: str) -> Listing:
        if ticker in self.listings:
            return self.listings[ticker]
        h = _stable_int(self.seed, ticker, "listing")
        sector = SECTORS[h % len(SECTORS)]
        exchange = listing_of(ticker)
        splits = (
            (GENERIC_SPLIT_RATIOS[(h >> 8) % len(GENERIC_SPLIT_RATIOS)],)
            if (h >> 16) % 10 < 3
            else ()
        )
        return Listing(
            ticker=ticker,
            name=f"{ticker} Simulated Holdings Inc.",
            exchange=YAHOO_EXCHANGE_CODES.get(
                exchange.mic, "NYQ" if exchange.mic == EXCHANGE else exchange.mic
            ),
            currency=exchange.price_unit,  # Yahoo's profile says the quote unit: GBp, ZAc
            quote_type="EQUITY",
            sector=sector,
            industry=f"{sector} - Simulated",
            listed=DEFAULT_LISTING,
            split_ratios=splits,
            dividend_yield=((h >> 24) % 5) * 0.008,
        )

    def calendar(self, ticker: str) -> SessionCalendar:
        """The calendar of the ticker's own exchange (by its Yahoo suffix)."""
        return exchange_calendar(listing_of(ticker).mic)

    # -- ground truth ----------------------------------------------------------------------
    def history(self, ticker: str, until: dt.date) -> TickerHistory:
        """Traded (unadjusted) daily bars and actions from listing through `until`, on the
        sessions of the ticker's own exchange."""
        path = self._path(ticker, until)
        bars = path.bars(np.arange(len(path)))
        return TickerHistory(
            ticker,
            path.first,
            path.sessions,
            bars.open,
            bars.high,
            bars.low,
            bars.close,
            bars.volume,
            path.dividend,
            path.splits,
        )

    def closes(self, ticker: str, until: dt.date) -> TickerCloses:
        """The traded closes and actions of `history`, without pricing the other bars."""
        path = self._path(ticker, until)
        return TickerCloses(
            path.sessions, path.closes(np.arange(len(path))), path.dividend, path.splits
        )

    def _path(self, ticker: str, until: dt.date) -> _Path:
        """The ticker's streams from listing through `until`, drawn in full (each draw depends on
        the ones before it) but not yet turned into bars: `_Path.bars` evaluates the sessions a
        request needs, so a one-session fetch does not price the whole history."""
        cal = self.calendar(ticker)
        mic = cal.name
        listing = self.listing(ticker)
        first = int(np.searchsorted(cal.sessions, np.datetime64(listing.listed, "D")))
        last = int(np.searchsorted(cal.sessions, np.datetime64(until, "D"), side="right"))
        n = max(last - first, 0)
        sessions = cal.sessions[first : first + n]
        is_index = listing.quote_type == "INDEX"

        # Each array has its own stream, so a shorter history is a prefix of a longer one. Each
        # exchange has its own market and sector factors (indexed by its own sessions); the US
        # streams keep their original names.
        market_key = ("market",) if mic == EXCHANGE else ("market", mic)
        sector_key = (
            ("sector", listing.sector) if mic == EXCHANGE else ("sector", listing.sector, mic)
        )
        market = self._factor(market_key, first, n, 0.010, 0.0003)
        sector = self._factor(sector_key, first, n, 0.006, None)
        params = _rng(self.seed, ticker, "params")
        beta = 1.0 if is_index else params.uniform(0.6, 1.4)
        idio_sigma = 0.002 if is_index else params.uniform(0.008, 0.022)
        start_price = float(np.exp(params.uniform(np.log(15), np.log(120)))) * PRICE_LEVELS.get(
            mic, 1.0
        )
        base_volume = 3e9 if is_index else params.uniform(2e6, 4e7)
        idio = _rng(self.seed, ticker, "idio").standard_normal(n) * idio_sigma
        log_ret = beta * market + (0.0 if is_index else sector) + idio

        dividends_at = self._dividend_schedule(ticker, listing, n)
        splits = self._split_schedule(ticker, listing, cal, first, n, avoid=dividends_at)

        # Per-original-share value path; dividends lower it on their ex-date (price drops by
        # the cash paid), splits divide the traded price by their ratio from the ex-date on.
        # value[i] = start_price * exp(cum[i]) * dropped[dividends before or on i].
        cum = np.cumsum(log_ret)
        share_factor = np.cumprod(splits)
        dividend = np.zeros(n)
        events = dividends_at[dividends_at > 0]
        dropped = [1.0]  # products of the drops through each event, in order (np.cumprod's)
        if events.size:
            q = listing.dividend_yield / 4
            prev_values = (start_price * np.exp(cum[events - 1])).tolist()
            # Python floats: the same IEEE operations as on numpy scalars, ~10x cheaper each.
            before = zip(prev_values, share_factor[events - 1].tolist(), strict=True)
            for i, (prev_value, prev_factor) in zip(events.tolist(), before, strict=True):
                prev_traded_close = prev_value * dropped[-1] / prev_factor
                amount = _round_like_numpy(q * prev_traded_close, 4)
                dividend[i] = amount
                dropped.append(dropped[-1] * (1.0 - amount / prev_traded_close))
        return _Path(
            ticker=ticker,
            first=first,
            sessions=sessions,
            is_index=is_index,
            start_price=start_price,
            base_volume=base_volume,
            log_ret=log_ret,
            cum=cum,
            events=events,
            dropped=np.array(dropped),
            dividend=dividend,
            splits=splits,
            share_factor=share_factor,
            seed=self.seed,
        )

    def _factor(
        self, key: tuple[str, ...], first: int, n: int, scale: float, drift: float | None
    ) -> np.ndarray:
        """`draws[first:first + n] * scale (+ drift)` of a factor stream, computed once per source
        for every ticker listed on the same session (read-only; elementwise, so a longer array
        starts with the shorter one's values)."""
        cache_key = (*key, first, scale, drift)
        scaled = self._scaled_factor_cache.get(cache_key)
        if scaled is None or len(scaled) < n:
            scaled = self._factor_draws(key, first + n)[first:] * scale
            if drift is not None:
                scaled = scaled + drift
            scaled.flags.writeable = False
            self._scaled_factor_cache[cache_key] = scaled
        return scaled[:n]

    def _factor_draws(self, key: tuple[str, ...], size: int) -> np.ndarray:
        """The first `size` draws of a market or sector factor stream, which every ticker of that
        market or sector shares: drawn once per source, not once per ticker (read-only)."""
        cache = self._factor_cache
        draws = cache.get(key)
        if draws is None or len(draws) < size:
            # A longer draw starts with the shorter one: the stream is the same, only longer.
            draws = _rng(self.seed, *key).standard_normal(size)
            draws.flags.writeable = False
            cache[key] = draws
        return draws[:size]

    def _split_schedule(
        self,
        ticker: str,
        listing: Listing,
        cal: SessionCalendar,
        first: int,
        n: int,
        avoid: np.ndarray,
    ) -> np.ndarray:
        """Split ex-dates drawn over a fixed horizon; never on a dividend ex-date, so each
        event's as-of basis is unambiguous."""
        splits = np.ones(n)
        if not listing.split_ratios or n == 0:
            return splits
        draws = _rng(self.seed, ticker, "splits").uniform(0.05, 1.0, len(listing.split_ratios))
        span = (SPLIT_HORIZON - listing.listed).days
        for ratio, u in zip(listing.split_ratios, sorted(draws), strict=True):
            day = listing.listed + dt.timedelta(days=int(u * span))
            i = int(np.searchsorted(cal.sessions, np.datetime64(day, "D"))) - first
            if i in avoid:
                i += 1
            if 0 < i < n:
                splits[i] = ratio
        return splits

    def _dividend_schedule(self, ticker: str, listing: Listing, n: int) -> np.ndarray:
        if listing.dividend_yield <= 0 or n == 0:
            return np.array([], dtype=int)
        phase = 20 + _stable_int(self.seed, ticker, "dividend-phase") % DIVIDEND_EVERY_SESSIONS
        return np.arange(phase, n, DIVIDEND_EVERY_SESSIONS)

    def corporate_actions(self, ticker: str, until: dt.date) -> pd.DataFrame:
        """Ground truth actions (traded basis): ex_date, dividend, split_ratio."""
        hist = self.closes(ticker, until)
        mask = (hist.dividend > 0) | (hist.split != 1)
        return pd.DataFrame(
            {
                "ex_date": pd.to_datetime(hist.sessions[mask]).date,
                "dividend": hist.dividend[mask],
                "split_ratio": hist.split[mask],
            }
        )

    # -- provider behaviour ----------------------------------------------------------------
    def _count_request(self, what: str) -> None:
        self._requests += 1
        if (
            self.faults.rate_limit
            and _rng(self.seed, "rate-limit", self._requests).random() < self.faults.rate_limit
        ):
            raise RateLimitError(f"429 Too Many Requests ({what}); simulated rate limit")

    def fetch_bars(self, query: BarsQuery) -> Payload:
        if query.interval == "1m":
            return self._fetch_minutes(query)
        self._count_request(f"daily bars for {len(query.tickers)} tickers")
        now = self.now()
        frames, errors = [], {}
        clocks: dict[str, _ExchangeClock] = {}
        for ticker in query.tickers:  # one pass per ticker, vectorised within
            try:
                frame = self._daily_payload(ticker, query.start, query.end, now, clocks)
            except UnknownExchangeError as exc:
                errors[ticker] = str(exc)
                continue
            if frame is None:
                errors[ticker] = "No data found, symbol may be delisted"
            elif isinstance(frame, pd.DataFrame) and frame.empty:
                errors[ticker] = (
                    f"No price data found for {query.start}..{query.end} (listed {self.listing(ticker).listed})"
                )
            else:
                frames.append(frame)
        return Payload(
            source=self.name,
            dataset="daily_bars",
            request={**query.describe(), "provider": "simulator", "seed": self.seed},
            fetched_at=now,
            frame=_frame(frames, DAILY_PAYLOAD_COLUMNS),
            errors=errors,
            provider_calls=1,
        )

    def _daily_payload(
        self,
        ticker: str,
        start: dt.date,
        end: dt.date,
        now: dt.datetime,
        clocks: dict[str, _ExchangeClock] | None = None,
    ) -> dict[str, np.ndarray] | pd.DataFrame | None:
        """The ticker's payload columns (a frame when faults rewrite rows), empty when it has no
        bar in the range, None when the ticker is unknown. Bars are priced only for the
        requested sessions; the as-of factors only need the actions after them. `clocks`: the
        request's `_ExchangeClock` per calendar, shared by its tickers."""
        if ticker in self.faults.unknown:
            return None
        cal = self.calendar(ticker)
        clocks = {} if clocks is None else clocks
        clock = clocks.get(cal.name)
        if clock is None:
            clock = clocks[cal.name] = _ExchangeClock.at(cal, now)
        opened = clock.opened
        if opened is None:
            return pd.DataFrame()
        path = self._path(ticker, opened)
        sessions = path.sessions
        idx = np.arange(
            np.searchsorted(sessions, np.datetime64(start, "D")),
            np.searchsorted(sessions, np.datetime64(end, "D"), side="right"),
        )
        if idx.size == 0:
            return pd.DataFrame()
        bars = path.bars(idx)
        o, h, lo, c, v = bars.open, bars.high, bars.low, bars.close, bars.volume
        # The session in progress: a forming bar built from the minutes so far.
        last = len(path) - 1
        if idx[-1] == last and sessions[last] == np.datetime64(opened, "D") and clock.in_session:
            minutes = self._minute_bars(ticker, opened, o[-1], h[-1], lo[-1], c[-1], v[-1], now)
            o[-1], h[-1], lo[-1] = minutes["open"][0], minutes["high"].max(), minutes["low"].min()
            c[-1], v[-1] = minutes["close"][-1], minutes["volume"].sum()

        # As-of basis: splits with D < ex-date <= F are applied to bar D; Yahoo's Adj Close
        # also applies dividends with D < ex-date <= F. Known actions are those on sessions
        # through F's local date; a dividend's factor uses the traded close before it.
        known = int(np.searchsorted(sessions, clock.today, side="right"))
        split_rows = np.flatnonzero(path.splits[:known] != 1.0)
        div_rows = path.events[path.events < known]
        div_prev_close = path.closes(div_rows - 1)
        div_amount = path.dividend[div_rows]
        div_factor = np.where(div_amount > 0, 1.0 - div_amount / div_prev_close, 1.0)
        later_splits = _product_after_rows(split_rows, path.splits[split_rows], idx)
        later_divs = _product_after_rows(div_rows, div_factor, idx)
        in_known = idx < known
        split = np.where(in_known, path.splits[idx], 1.0)
        div = np.where(in_known, path.dividend[idx], 0.0)

        asof_close = c / later_splits
        columns = {
            TICKER_COLUMN: np.full(idx.size, ticker, dtype=object),
            "Date": cal.local_midnights[path.first + idx],
            "Open": o / later_splits,
            "High": h / later_splits,
            "Low": lo / later_splits,
            "Close": asof_close,
            "Adj Close": asof_close * later_divs,
            "Volume": np.round(v * later_splits).astype(np.int64),
            # A dividend is quoted per share as of F: re-based by later splits only.
            "Dividends": div / later_splits,
            "Stock Splits": np.where(split != 1.0, split, 0.0),
        }
        f = self.faults
        if not (f.missing_bars or f.duplicates or f.bad_ticks or f.price_100x):
            return columns  # framed once for the whole request (`_frame`)
        return self._apply_faults(ticker, pd.DataFrame(columns), path.first + idx)

    def _apply_faults(
        self, ticker: str, frame: pd.DataFrame, calendar_index: np.ndarray
    ) -> pd.DataFrame:
        f = self.faults
        if not (f.missing_bars or f.duplicates or f.bad_ticks or f.price_100x):
            return frame
        size = int(calendar_index.max()) + 1

        def hit(kind: str, p: float) -> np.ndarray:
            return (
                _rng(self.seed, ticker, "fault", kind).random(size)[calendar_index] < p
                if p
                else np.zeros(len(frame), bool)
            )

        prices = ["Open", "High", "Low", "Close", "Adj Close"]
        x100 = hit("price_100x", f.price_100x)
        frame.loc[x100, prices] = frame.loc[x100, prices] * 100
        bad = hit("bad_ticks", f.bad_ticks)
        kinds = _rng(self.seed, ticker, "bad-kind").integers(0, 3, size)[calendar_index]
        frame.loc[bad & (kinds == 0), ["High", "Low"]] = frame.loc[
            bad & (kinds == 0), ["Low", "High"]
        ].to_numpy()
        frame.loc[bad & (kinds == 1), "Close"] = -frame.loc[bad & (kinds == 1), "Close"]
        frame.loc[bad & (kinds == 2), "Open"] = np.nan
        keep = ~hit("missing_bars", f.missing_bars)
        dup = hit("duplicates", f.duplicates)[keep]
        frame = frame.loc[keep]
        if dup.any():
            frame = pd.concat([frame, frame.loc[dup]]).sort_values("Date", kind="stable")
        return frame.reset_index(drop=True)

    # -- one-minute bars -------------------------------------------------------------------
    def _fetch_minutes(self, query: BarsQuery) -> Payload:
        first, last = self.intraday_window()
        if query.start < first:
            raise ProviderWindowError(
                f"1m data not available for {query.start}: one-minute bars exist only for the "
                f"last {INTRADAY_LOOKBACK_DAYS} days ({first}..{last})"
            )
        if (query.end - query.start).days + 1 > INTRADAY_MAX_DAYS_PER_REQUEST:
            raise ProviderWindowError(
                f"1m request {query.start}..{query.end} spans more than "
                f"{INTRADAY_MAX_DAYS_PER_REQUEST} days; request at most {INTRADAY_MAX_DAYS_PER_REQUEST} days at a time"
            )
        self._count_request(f"1m bars for {len(query.tickers)} tickers")
        now = self.now()
        frames, errors = [], {}
        for ticker in query.tickers:
            if ticker in self.faults.unknown:
                errors[ticker] = "No data found, symbol may be delisted"
                continue
            try:
                cal = self.calendar(ticker)
            except UnknownExchangeError as exc:
                errors[ticker] = str(exc)
                continue
            opened = cal.latest_opened_session(now)
            path = self._path(ticker, opened) if opened else None
            wanted = (
                [
                    session
                    for session in cal.sessions_in_range(query.start, min(query.end, opened))
                    if np.datetime64(session, "D") >= path.sessions[0]
                ]
                if path is not None and len(path)
                else []
            )
            rows = np.searchsorted(path.sessions, np.array(wanted, dtype="datetime64[D]"))
            bars = path.bars(rows)
            parts = []
            for k, session in enumerate(wanted):
                m = self._minute_bars(
                    ticker,
                    session,
                    bars.open[k],
                    bars.high[k],
                    bars.low[k],
                    bars.close[k],
                    bars.volume[k],
                    now,
                )
                parts.append(
                    pd.DataFrame(
                        {
                            TICKER_COLUMN: ticker,
                            "Datetime": m["ts"].tz_convert(cal.tz),
                            "Open": m["open"],
                            "High": m["high"],
                            "Low": m["low"],
                            "Close": m["close"],
                            "Volume": m["volume"],
                        }
                    )
                )
            if parts:
                minutes = pd.concat(parts, ignore_index=True)
                if query.since is not None:
                    minutes = minutes[minutes["Datetime"] >= pd.Timestamp(query.since)]
                frames.append(minutes)
            else:
                errors[ticker] = f"No 1m price data found for {query.start}..{query.end}"
        return Payload(
            source=self.name,
            dataset="intraday_bars_1m",
            request={**query.describe(), "provider": "simulator", "seed": self.seed},
            fetched_at=now,
            frame=_concat(frames, INTRADAY_PAYLOAD_COLUMNS),
            errors=errors,
            provider_calls=1,
        )

    def _minute_bars(
        self,
        ticker: str,
        session: dt.date,
        o: np.float64,
        h: np.float64,
        lo: np.float64,
        c: np.float64,
        volume: np.int64,
        now: dt.datetime,
    ) -> dict:
        """Minute bars of `session` that aggregate exactly to its daily bar (traded basis: open,
        high, low, close, volume), cut at `now` with the last minute still forming. The ticker's
        own exchange's regular hours: no minute in a lunch break."""
        cal = self.calendar(ticker)
        minutes = cal.minutes(session)
        n = len(minutes)
        rng = _rng(self.seed, ticker, "minutes", session.isoformat())
        # Anchors: the open, the day's high and low at two random minutes (in random order),
        # the close. Between anchors, a Brownian bridge; the path touches each extreme exactly
        # where its anchor is and nowhere beyond it.
        k1, k2 = np.sort(rng.choice(np.arange(1, n), size=2, replace=False))
        first, second = (h, lo) if rng.random() < 0.5 else (lo, h)
        anchors = [(0, o), (int(k1), first), (int(k2), second), (n, c)]
        steps = rng.standard_normal(n)
        scale = 0.3 * (h - lo) / np.sqrt(n)
        path = np.empty(n + 1)
        for (i0, v0), (i1, v1) in itertools.pairwise(anchors):  # three segments
            walk = np.concatenate([[0.0], np.cumsum(steps[i0:i1])])
            bridge = walk - np.linspace(0.0, walk[-1], i1 - i0 + 1)
            path[i0 : i1 + 1] = np.linspace(v0, v1, i1 - i0 + 1) + bridge * scale
        path = np.clip(np.round(path, 2), lo, h)
        for minute, value in anchors:
            path[minute] = value
        opens, closes = path[:-1], path[1:]
        weights = (1.5 + np.cos(np.linspace(0, 2 * np.pi, n))) * rng.gamma(4.0, 0.25, n)
        raw = weights / weights.sum() * volume
        vol = np.floor(raw).astype(np.int64)
        remainder = int(volume - vol.sum())
        vol[np.argsort(raw - vol)[::-1][:remainder]] += 1
        bars = {
            "ts": minutes,
            "open": opens,
            "high": np.maximum(opens, closes),
            "low": np.minimum(opens, closes),
            "close": closes,
            "volume": vol,
        }
        if now >= cal.close_utc(session):
            return bars
        # Session in progress: minutes started by `now`; the last one is still forming.
        started = int(np.searchsorted(minutes.asi8, pd.Timestamp(now).value, side="right"))
        started = max(started, 1)
        elapsed = (pd.Timestamp(now) - minutes[started - 1]).total_seconds() / 60.0
        frac = min(max(elapsed, 0.0), 1.0)
        out = {k: v[:started].copy() for k, v in bars.items()}
        j = started - 1
        out["close"][j] = round(opens[j] + (closes[j] - opens[j]) * frac, 2)
        out["high"][j] = max(opens[j], out["close"][j])
        out["low"][j] = min(opens[j], out["close"][j])
        out["volume"][j] = int(vol[j] * frac)
        return out

    # -- profiles ----------------------------------------------------------------------------
    def fetch_profiles(self, tickers: tuple[str, ...]) -> Payload:
        self._count_request(f"profiles for {len(tickers)} tickers")
        records, errors = {}, {}
        for ticker in tickers:
            if ticker in self.faults.unknown:
                errors[ticker] = "No fundamentals data found for symbol, may be delisted"
                continue
            try:
                listing, cal = self.listing(ticker), self.calendar(ticker)
            except UnknownExchangeError as exc:
                errors[ticker] = str(exc)
                continue
            records[ticker] = {
                "symbol": ticker,
                "longName": listing.name,
                "shortName": listing.name[:32],
                "exchange": listing.exchange,
                "fullExchangeName": "NYSE"
                if listing.exchange == "NYQ"
                else "NasdaqGS"
                if listing.exchange == "NMS"
                else listing.exchange,
                "currency": listing.currency,
                "quoteType": listing.quote_type,
                "sector": listing.sector,
                "industry": listing.industry,
                "firstTradeDateEpochUtc": int(
                    dt.datetime.combine(listing.listed, dt.time(14, 30), dt.UTC).timestamp()
                ),
                "exchangeTimezoneName": cal.tz.key,
                "dataSource": "simulator",
            }
        return Payload(
            source=self.name,
            dataset="company_profiles",
            request={"tickers": list(tickers), "provider": "simulator", "seed": self.seed},
            fetched_at=self.now(),
            frame=pd.DataFrame(),
            records=records,
            errors=errors,
            provider_calls=1,
        )

    def describe(self) -> dict:
        return {"source": self.name, "seed": self.seed, "clock": self.now().isoformat()}


def _round_like_numpy(x: float, decimals: int) -> float:
    """`round(np.float64(x), decimals)` on a Python float: numpy scales, rounds half to even and
    scales back (not Python's correctly rounded decimal `round`), so the values stay identical."""
    scale = float(10**decimals)
    return round(x * scale) / scale


def _product_after_rows(rows: np.ndarray, factors: np.ndarray, at: np.ndarray) -> np.ndarray:
    """out[k] = product of the factors on rows > at[k] (ascending `rows`; 1 where none), taken
    from the last row backwards: a suffix product over the whole history whose other factors are
    1.0, so the same value bit for bit."""
    suffix = np.concatenate([[1.0], np.cumprod(factors[::-1])])
    return suffix[len(rows) - np.searchsorted(rows, at, side="right")]


def _frame(
    parts: list[dict[str, np.ndarray] | pd.DataFrame], columns: tuple[str, ...]
) -> pd.DataFrame:
    """The tickers' payload columns as one frame: concatenated column by column when every
    part is plain columns on one time zone (no frame per ticker to build and concatenate),
    else through `pd.concat` exactly as before (mixed zones, rows rewritten by faults)."""
    zones = {str(p["Date"].dtype) for p in parts}
    if not parts or len(zones) > 1 or any(isinstance(p, pd.DataFrame) for p in parts):
        return _concat([pd.DataFrame(p) if isinstance(p, dict) else p for p in parts], columns)
    data = {
        name: (
            parts[0][name].append([p[name] for p in parts[1:]])
            if name == "Date"
            else np.concatenate([p[name] for p in parts])
        )
        for name in (TICKER_COLUMN, *columns)
    }
    return pd.DataFrame(data)


def _concat(frames: list[pd.DataFrame], columns: tuple[str, ...]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame(columns=[TICKER_COLUMN, *columns])
    return pd.concat(frames, ignore_index=True)[[TICKER_COLUMN, *columns]]
