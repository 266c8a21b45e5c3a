"""The read-only HTTP API over the current snapshot (DESIGN.md, "Serving").

Handlers are plain `def`s (FastAPI runs them in its thread pool); each request takes the
current snapshot once (the `Snap` dependency, cached per request), so all its queries read one
snapshot, and its ETag is that snapshot's id. The shared preamble is dependencies: `Snap`,
`KnownTicker`/`KnownTickers` (400/404 against the snapshot), `SessionRange`, `FeatureFields`;
then `answer_from` gives 304 to a client holding this snapshot and 404 when the table an
endpoint reads is not published. Input is validated before the 304 (RFC 9110, 13.2.1). Nothing
here can reach the warehouse.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from marketflow_assets.api import models
from marketflow_assets.api.cached import (
    CACHE_CONTROL,
    CachedResponses,
    cache_key,
    etag_matches,
    response_headers,
)
from marketflow_assets.api.errors import (
    ERROR_RESPONSES,
    ApiError,
    api_error_handler,
    validation_error_handler,
)
from marketflow_assets.api.middleware import AccessLogMiddleware
from marketflow_assets.api.queries import (
    PageQuery,
    fetch_arrow,
    fetch_json,
    fetch_one_json,
    to_csv,
    to_parquet,
)
from marketflow_assets.api.snapshots import NoSnapshotError, OpenSnapshot, SnapshotReader
from marketflow_assets.calendar import xnys
from marketflow_assets.serving.layout import serving_dir
from marketflow_assets.settings import Settings
from marketflow_assets.tickers import InvalidTickerError, validate_ticker, validate_tickers

MAX_LIMIT = 20_000
"""The page-size cap: `limit` above it is a 400. 10 years of daily bars (2,520) fit a page."""
DEFAULT_LIMIT = 5_000
MAX_TICKERS = 1_000
MAX_FUNDAMENTAL_PERIODS = 40
MEDIA = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}
FEATURES = tuple(
    name for name in models.FeatureRow.model_fields if name not in ("ticker", "session_date")
)

TickerPath = Annotated[str, Path(description="Yahoo symbol, e.g. AAPL, BRK-B, ^GSPC")]
Start = Annotated[dt.date | None, Query(description="First session (inclusive)")]
End = Annotated[dt.date | None, Query(description="Last session (inclusive)")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Rows per page, at most {MAX_LIMIT}")]
Cursor = Annotated[
    str | None, Query(max_length=512, description="`next_cursor` of the previous page")
]
Format = Annotated[Literal["json", "csv", "parquet"], Query(description="Response format")]
TickerList = Annotated[
    str | None,
    Query(
        max_length=20_000,
        description=f"Comma-separated symbols (default: all; at most {MAX_TICKERS})",
    ),
]
Fields = Annotated[
    str | None,
    Query(max_length=2_000, description="Comma-separated feature columns (default: all)"),
]


def current_snapshot(request: Request) -> OpenSnapshot:
    """The snapshot a request reads (FastAPI caches a dependency within one request)."""
    try:
        return request.app.state.snapshots.get()
    except NoSnapshotError as exc:
        raise ApiError(503, None, f"{exc}: run the pipeline (make demo) first") from exc


Snap = Annotated[OpenSnapshot, Depends(current_snapshot)]


def known_ticker(ticker: TickerPath, snap: Snap) -> str:
    """The path's ticker: a valid symbol (400) that the snapshot holds (404)."""
    try:
        symbol = validate_ticker(ticker, origin="ticker")
    except InvalidTickerError as exc:
        raise ApiError(400, "ticker", str(exc)) from exc
    if symbol not in snap.tickers:
        raise ApiError(404, "ticker", f"unknown ticker {symbol!r}: not in snapshot {snap.id}")
    return symbol


KnownTicker = Annotated[str, Depends(known_ticker)]


def known_tickers(snap: Snap, tickers: TickerList = None) -> list[str] | None:
    """The `tickers` filter (None = all): valid, at most MAX_TICKERS, all in the snapshot."""
    if tickers is None:
        return None
    try:
        wanted = validate_tickers([p for p in tickers.split(",") if p.strip()], origin="tickers")
    except InvalidTickerError as exc:
        raise ApiError(400, "tickers", str(exc)) from exc
    if not wanted:
        raise ApiError(400, "tickers", "tickers is empty: give comma-separated symbols or omit it")
    if len(wanted) > MAX_TICKERS:
        raise ApiError(
            400, "tickers", f"at most {MAX_TICKERS} tickers per request, got {len(wanted)}"
        )
    unknown = [t for t in wanted if t not in snap.tickers]
    if unknown:
        raise ApiError(
            404,
            "tickers",
            f"unknown ticker(s) {', '.join(unknown[:10])}: not in snapshot {snap.id}",
        )
    return wanted


KnownTickers = Annotated[list[str] | None, Depends(known_tickers)]


@dataclass(frozen=True)
class Sessions:
    start: dt.date | None
    end: dt.date | None

    def filter(self, q: PageQuery, column: str = "session_date") -> None:
        if self.start:
            q.where.append(f'"{column}" >= ?')
            q.params.append(self.start)
        if self.end:
            q.where.append(f'"{column}" <= ?')
            q.params.append(self.end)


def session_range(start: Start = None, end: End = None) -> Sessions:
    if start and end and start > end:
        raise ApiError(400, "start", f"start {start} is after end {end}")
    return Sessions(start, end)


SessionRange = Annotated[Sessions, Depends(session_range)]


def feature_fields(fields: Fields = None) -> tuple[str, ...]:
    return _fields(fields)


FeatureFields = Annotated[tuple[str, ...], Depends(feature_fields)]


def answer_from(snap: OpenSnapshot, request: Request, *tables: str, what: str) -> None:
    """Once the input is valid: 304 when the client already holds this snapshot (its ETag),
    404 when a table the endpoint reads is not in the snapshot."""
    if etag_matches(snap, request.headers.get("if-none-match")):
        raise HTTPException(
            status_code=304, headers={"ETag": f'"{snap.id}"', "Cache-Control": CACHE_CONTROL}
        )
    missing = [table for table in tables if not snap.has(table)]
    if missing:
        raise ApiError(
            404, None, f"{what} not published: snapshot {snap.id} has no {' / '.join(missing)}"
        )


def create_app(
    settings: Settings,
    *,
    api_keys: frozenset[str] = frozenset(),
    now: dt.datetime | None = None,
) -> FastAPI:
    """The API for `settings.home`'s snapshots. `api_keys`: when non-empty, every endpoint but
    /v1/health needs one of them in `X-API-Key`. `now` pins the clock /v1/health judges
    freshness by (default: the simulator clock when set, else real time)."""
    reader = SnapshotReader(serving_dir(settings))
    clock = now or (settings.simulator_now if settings.source == "simulator" else None)

    @asynccontextmanager
    async def warm_up(_: FastAPI) -> AsyncIterator[None]:
        """Load the exchange calendar and open the snapshot before the first request."""
        xnys()
        with contextlib.suppress(NoSnapshotError):
            reader.get()
        yield

    app = FastAPI(
        lifespan=warm_up,
        title="MarketFlow API",
        version="1.0.0",
        description=(
            "Read-only market data from the current MarketFlow snapshot: prices, bars, "
            "features, fundamentals. List responses are `{data, snapshot, next_cursor}`; "
            f"pages hold at most {MAX_LIMIT} rows (`limit`), follow `next_cursor` for more. "
            "ETag = snapshot id (send If-None-Match for 304)."
        ),
        responses={k: v for k, v in ERROR_RESPONSES.items() if k in (400, 401)},
    )
    app.state.snapshots = reader
    app.add_exception_handler(ApiError, api_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    # The last added runs first: keys and the access log, then repeats from the cache.
    app.add_middleware(CachedResponses, reader=reader)
    app.add_middleware(AccessLogMiddleware, api_keys=api_keys, open_paths=("/v1/health",))
    data = {"responses": ERROR_RESPONSES}
    # Bars and features also come as CSV or Parquet (`format`).
    tabular = {
        "responses": {
            **ERROR_RESPONSES,
            200: {"content": {MEDIA["csv"].split(";")[0]: {}, MEDIA["parquet"]: {}}},
        }
    }

    def respond(
        snap: OpenSnapshot,
        request: Request,
        body: bytes,
        media: str,
        next_cursor: str | None = None,
    ) -> Response:
        return Response(body, media_type=media, headers=response_headers(snap, next_cursor))

    def envelope(snap: OpenSnapshot, data: bytes, next_cursor: str | None, **extra) -> bytes:
        head = {"snapshot": snap.id, "next_cursor": next_cursor, **extra}
        return (
            b'{"data":'
            + data
            + b","
            + json.dumps(head, default=str, separators=(",", ":"))[1:].encode()
        )

    def page(snap: OpenSnapshot, request: Request, q: PageQuery, fmt: str, **extra) -> Response:
        """One page of `q` in `fmt`, kept in the snapshot's response cache: a snapshot never
        changes, so `CachedResponses` answers the same request on it from there."""
        key = cache_key(request.scope)
        if (hit := snap.responses.get(key)) is not None:  # cached since routing began
            return respond(snap, request, hit[0], hit[1], hit[2])
        response = _page(snap, request, q, fmt, **extra)
        snap.responses.put(key, response.body, MEDIA[fmt], response.headers.get("X-Next-Cursor"))
        return response

    def _page(snap: OpenSnapshot, request: Request, q: PageQuery, fmt: str, **extra) -> Response:
        with snap.cursor() as cur:
            if fmt == "json":
                result = fetch_json(cur, q, snap.columns)
                return respond(
                    snap,
                    request,
                    envelope(snap, result.body, result.next_cursor, **extra),
                    MEDIA["json"],
                    result.next_cursor,
                )
            table, next_cursor = fetch_arrow(cur, q, snap.columns)
        body = to_csv(table) if fmt == "csv" else to_parquet(table)
        return respond(snap, request, body, MEDIA[fmt], next_cursor)

    # -- endpoints --------------------------------------------------------------------------
    @app.get("/v1/health", response_model=models.HealthResponse, tags=["meta"])
    def health() -> Response:
        """Status, the current snapshot, and how stale it is against the exchange calendar."""
        checked = now or clock or dt.datetime.now(dt.UTC)
        try:
            snap = reader.get()
        except NoSnapshotError:
            body = models.HealthResponse(
                status="no_snapshot", checked_at=checked, snapshot=None, freshness=None
            )
            return Response(
                body.model_dump_json(),
                status_code=503,
                media_type=MEDIA["json"],
                headers={"Cache-Control": "no-store"},
            )
        cal = xnys()
        closed = cal.latest_closed_session(checked)
        mine = snap.latest_session
        behind = None
        if closed is not None and mine is not None:
            behind = max(len(cal.sessions_in_range(mine, closed)) - 1, 0) if closed > mine else 0
        info = models.SnapshotInfo(
            id=snap.id,
            created_at=snap.created_at,
            run_id=snap.run_id,
            latest_session=mine,
            tables=[models.TableInfo(table=k, **v) for k, v in sorted(snap.tables.items())],
        )
        body = models.HealthResponse(
            status="ok" if behind == 0 else "stale",
            checked_at=checked,
            snapshot=info,
            freshness=models.Freshness(
                latest_closed_session=closed,
                snapshot_session=mine,
                sessions_behind=behind,
                snapshot_age_seconds=(checked - snap.created_at).total_seconds()
                if snap.created_at
                else None,
            ),
        )
        return Response(
            body.model_dump_json(),
            media_type=MEDIA["json"],
            headers={"Cache-Control": "no-store", "X-Snapshot-Id": snap.id},
        )

    @app.get("/v1/symbols", response_model=models.SymbolsResponse, tags=["reference"], **data)
    def symbols(
        request: Request,
        snap: Snap,
        sector: Annotated[str | None, Query(max_length=200)] = None,
        exchange: Annotated[str | None, Query(max_length=50)] = None,
    ) -> Response:
        """Symbols with name, exchange, currency, sector, industry."""
        answer_from(snap, request, "silver.symbols", what="symbols")
        q = _symbols_query(snap)
        for column, value in (("sector", sector), ("exchange", exchange)):
            if value is not None:
                q.where.append(f"{column} = ?")
                q.params.append(value)
        return page(snap, request, q, "json")

    @app.get(
        "/v1/symbols/{ticker:path}",
        response_model=models.SymbolResponse,
        tags=["reference"],
        **data,
    )
    def symbol(request: Request, snap: Snap, symbol_: KnownTicker) -> Response:
        """One symbol's reference data."""
        answer_from(snap, request, "silver.symbols", what="symbols")
        q = _symbols_query(snap)
        with snap.cursor() as cur:
            row = fetch_one_json(
                cur, q.table, snap.columns, [c for c, _ in q.columns], "ticker = ?", [symbol_]
            )
        if row is None:
            raise ApiError(404, "ticker", f"no reference data for {symbol_} in snapshot {snap.id}")
        body = b'{"data":' + row.encode() + f',"snapshot":"{snap.id}"}}'.encode()
        return respond(snap, request, body, MEDIA["json"])

    @app.get(
        "/v1/prices/latest", response_model=models.LatestPricesResponse, tags=["prices"], **data
    )
    def prices_latest(request: Request, snap: Snap, wanted: KnownTickers) -> Response:
        """Each ticker's latest session: as-traded OHLCV, adjusted close, one-day return."""
        answer_from(snap, request, "serving.latest_prices", what="prices")
        q = PageQuery(
            "serving.latest_prices",
            [(f, f) for f in models.LatestPrice.model_fields],
            ["ticker"],
            ["str"],
            "prices_latest",
        )
        if wanted is not None:
            q.where.append("list_contains(?, ticker)")
            q.params.append(wanted)
        return page(snap, request, q, "json")

    @app.get(
        "/v1/bars/{ticker:path}", response_model=models.BarsResponse, tags=["prices"], **tabular
    )
    def bars(
        request: Request,
        snap: Snap,
        symbol_: KnownTicker,
        sessions: SessionRange,
        interval: Annotated[
            Literal["1d", "1m"],
            Query(description="1d: daily bars; 1m: one-minute bars of the recent sessions served"),
        ] = "1d",
        adjusted: Annotated[
            bool | None,
            Query(
                description="Daily: back-adjusted for splits and dividends (default true). One-minute bars are as traded only."
            ),
        ] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
        format: Format = "json",
    ) -> Response:
        """Bars in time order; `next_cursor` when more remain. CSV and Parquet put the next
        cursor in the `X-Next-Cursor` header."""
        if interval == "1m" and adjusted:
            raise ApiError(
                400,
                "adjusted",
                "one-minute bars are served as traded: use adjusted=false or omit it",
            )
        if interval == "1d":
            adjust = True if adjusted is None else adjusted
            answer_from(snap, request, "silver.daily_bars", what="daily bars")
            prefix = "adj_" if adjust else ""
            columns = [("ticker", "ticker"), ("session_date", "session_date")]
            columns += [(c, prefix + c) for c in ("open", "high", "low", "close", "volume")]
            columns += [("dividend", "dividend"), ("split_ratio", "split_ratio")]
            q = PageQuery("silver.daily_bars", columns, ["session_date"], ["date"], "bars_1d")
        else:
            adjust = False
            answer_from(snap, request, "silver.intraday_bars_1m", what="one-minute bars")
            columns = [
                (c, c)
                for c in ("ticker", "session_date", "ts", "open", "high", "low", "close", "volume")
            ]
            q = PageQuery("silver.intraday_bars_1m", columns, ["ts"], ["ts"], "bars_1m")
        q.where.append("ticker = ?")
        q.params.append(symbol_)
        sessions.filter(q)
        q.limit, q.cursor = limit, cursor
        return page(snap, request, q, format, ticker=symbol_, interval=interval, adjusted=adjust)

    @app.get(
        "/v1/features/latest", response_model=models.FeaturesResponse, tags=["features"], **data
    )
    def features_latest(
        request: Request, snap: Snap, wanted: KnownTickers, chosen: FeatureFields
    ) -> Response:
        """Latest features per ticker, for screening."""
        answer_from(snap, request, "serving.latest_features", what="features")
        q = PageQuery(
            "serving.latest_features",
            [(c, c) for c in ("ticker", "session_date", *chosen)],
            ["ticker"],
            ["str"],
            "features_latest",
        )
        if wanted is not None:
            q.where.append("list_contains(?, ticker)")
            q.params.append(wanted)
        return page(snap, request, q, "json")

    @app.get(
        "/v1/features/{ticker:path}",
        response_model=models.FeaturesResponse,
        tags=["features"],
        **tabular,
    )
    def features(
        request: Request,
        snap: Snap,
        symbol_: KnownTicker,
        sessions: SessionRange,
        chosen: FeatureFields,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
        format: Format = "json",
    ) -> Response:
        """gold.daily_features rows (TA-Lib indicators on adjusted prices) in time order."""
        answer_from(snap, request, "gold.daily_features", what="features")
        q = PageQuery(
            "gold.daily_features",
            [(c, c) for c in ("ticker", "session_date", *chosen)],
            ["session_date"],
            ["date"],
            "features",
        )
        q.where.append("ticker = ?")
        q.params.append(symbol_)
        sessions.filter(q)
        q.limit, q.cursor = limit, cursor
        return page(snap, request, q, format)

    @app.get(
        "/v1/fundamentals/{ticker:path}",
        response_model=models.FundamentalsResponse,
        tags=["fundamentals"],
        **data,
    )
    def fundamentals(
        request: Request,
        snap: Snap,
        symbol_: KnownTicker,
        as_of: Annotated[
            dt.date | None,
            Query(description="Point in time (default: the snapshot's latest session)"),
        ] = None,
        period_type: Annotated[Literal["annual", "quarterly"] | None, Query()] = None,
        limit: Annotated[
            int,
            Query(
                ge=1,
                le=MAX_FUNDAMENTAL_PERIODS,
                description=f"Latest periods, at most {MAX_FUNDAMENTAL_PERIODS}",
            ),
        ] = 8,
    ) -> Response:
        """Point-in-time statements and ratios: only what was known on `as_of`."""
        answer_from(
            snap,
            request,
            "silver.financial_facts",
            "gold.fundamentals_daily",
            what="fundamentals (materialize the fundamentals assets, then the snapshot)",
        )
        day = as_of or snap.latest_session or dt.datetime.now(dt.UTC).date()
        facts = PageQuery(
            "silver.financial_facts",
            [
                (c, c)
                for c in models.FinancialFact.model_fields
                if c in dict(snap.columns["silver.financial_facts"])
            ],
            ["period_end", "statement", "line_item"],
            ["date", "str", "str"],
            "fundamentals",
        )
        facts.where += [
            "ticker = ?",
            "CAST(known_at AS DATE) <= ?",
            "(superseded_at IS NULL OR CAST(superseded_at AS DATE) > ?)",
            "period_end IN (SELECT DISTINCT period_end FROM silver.financial_facts WHERE ticker = ? AND CAST(known_at AS DATE) <= ? AND (? IS NULL OR period_type = ?) AND period_type <> 'instant' ORDER BY period_end DESC LIMIT ?)",
            # statements only: dated share counts (period_type instant) reach users through
            # the ratios' shares_outstanding
            "period_type <> 'instant'",
        ]
        facts.params += [symbol_, day, day, symbol_, day, period_type, period_type, limit]
        if period_type:
            facts.where.append("period_type = ?")
            facts.params.append(period_type)
        ratio_cols = [
            c
            for c in models.FundamentalRatios.model_fields
            if c in dict(snap.columns["gold.fundamentals_daily"])
        ]
        with snap.cursor() as cur:
            result = fetch_json(cur, facts, snap.columns)
            ratios = fetch_one_json(
                cur,
                "gold.fundamentals_daily",
                snap.columns,
                ratio_cols,
                "ticker = ? AND session_date <= ?",
                [symbol_, day],
                " ORDER BY session_date DESC",
            )
        body = envelope(snap, result.body, None, as_of=day.isoformat())
        body = body[:-1] + b',"ratios":' + (ratios.encode() if ratios else b"null") + b"}"
        return respond(snap, request, body, MEDIA["json"])

    @app.get("/v1/sectors/daily", response_model=models.SectorsResponse, tags=["features"], **data)
    def sectors_daily(
        request: Request,
        snap: Snap,
        sessions: SessionRange,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> Response:
        """Sector comparison rows (gold.sector_daily) by session and sector."""
        answer_from(snap, request, "gold.sector_daily", what="sector rows")
        present = dict(snap.columns["gold.sector_daily"])
        q = PageQuery(
            "gold.sector_daily",
            [(c, c) for c in models.SectorDay.model_fields if c in present],
            # one row per (session, sector, exchange); snapshots before exchanges: no mic
            ["session_date", "sector", *(["mic"] if "mic" in present else [])],
            ["date", "str", *(["str"] if "mic" in present else [])],
            "sectors",
        )
        sessions.filter(q)
        q.limit, q.cursor = limit, cursor
        return page(snap, request, q, "json")

    @app.get(
        "/v1/corporate-actions/{ticker:path}",
        response_model=models.CorporateActionsResponse,
        tags=["reference"],
        **data,
    )
    def corporate_actions(request: Request, snap: Snap, symbol_: KnownTicker) -> Response:
        """Splits and dividends by ex-date."""
        answer_from(snap, request, "silver.corporate_actions", what="corporate actions")
        present = dict(snap.columns["silver.corporate_actions"])
        q = PageQuery(
            "silver.corporate_actions",
            [(c, c) for c in models.CorporateAction.model_fields if c in present],
            ["ex_date"],
            ["date"],
            "actions",
        )
        q.where.append("ticker = ?")
        q.params.append(symbol_)
        return page(snap, request, q, "json")

    return app


def _symbols_query(snap: OpenSnapshot) -> PageQuery:
    present = dict(snap.columns["silver.symbols"])
    columns = [(c, c) for c in models.Symbol.model_fields if c in present]
    return PageQuery("silver.symbols", columns, ["ticker"], ["str"], "symbols")


def _fields(raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return FEATURES
    chosen = [f.strip().lower() for f in raw.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in FEATURES]
    if unknown or not chosen:
        shown = ", ".join(repr(f[:40]) for f in unknown[:5]) or "none"
        raise ApiError(
            400, "fields", f"unknown field(s) {shown}; choose from {', '.join(FEATURES)}"
        )
    return tuple(dict.fromkeys(chosen))
