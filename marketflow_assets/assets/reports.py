"""Starter dashboards: a self-contained HTML report per ticker, from gold.daily_features."""

import base64
import html
import io
from pathlib import Path
from urllib.parse import quote

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from marketflow_assets import cadence
from marketflow_assets.calendar import xnys
from marketflow_assets.resources import WAREHOUSE_POOL, WAREHOUSE_RETRY_POLICY, ticker_scope
from marketflow_assets.storage.lake import LakeResource
from marketflow_assets.storage.warehouse import WarehouseResource
from marketflow_assets.transforms.indicators import ma_crossovers

REPORT_SESSIONS = 252
PREVIEW_TICKERS = 3  # charts embedded in the materialization metadata (the rest: files only)
CHARTS = (
    "Daily OHLC (adjusted) with SMA 20 / 50 / 200",
    "Daily returns (%)",
    "SMA 50 / SMA 200 crossovers (golden ▲, death ▼)",
    "RSI 14",
)
UP, DOWN = "#2e7d32", "#c62828"
SMA_COLORS = {"sma_20": "#1e88e5", "sma_50": "#fb8c00", "sma_200": "#6d4c41"}
REPORT_SQL = """
SELECT ticker, session_date, adj_open, adj_high, adj_low, adj_close, return_1d,
    sma_20, sma_50, sma_200, rsi_14
FROM gold.daily_features
WHERE session_date >= $since AND ($tickers IS NULL OR list_contains($tickers, ticker))
ORDER BY ticker, session_date
"""
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}
table{{border-collapse:collapse}}td,th{{padding:2px 10px;text-align:right}}</style>
</head><body>
{body}
</body></html>
"""


def reports_dir(lake: LakeResource) -> Path:
    """$MARKETFLOW_HOME/reports/daily: the lake's local root is always $MARKETFLOW_HOME/lake."""
    return Path(lake.local_root).parent / "reports" / "daily"


def read_recent(warehouse: WarehouseResource, tickers: tuple[str, ...] | None) -> pd.DataFrame:
    """The last `REPORT_SESSIONS` sessions of gold.daily_features (bounded, whatever its size)."""
    with warehouse.get_connection() as con:
        try:
            last = con.execute("SELECT max(session_date) FROM gold.daily_features").fetchone()[0]
        except duckdb.CatalogException as exc:
            raise dg.Failure(
                f"gold.daily_features is not readable ({exc}); materialize gold/daily_features first",
                allow_retries=False,
            ) from exc
        since = xnys().offset(last, -(REPORT_SESSIONS - 1)) if last else None  # NULL: no rows
        params = {"since": since, "tickers": list(tickers) if tickers else None}
        return con.execute(REPORT_SQL, params).df()


def ticker_figure(ticker: str, rows: pd.DataFrame, crosses: pd.DataFrame) -> Figure:
    """The four charts of one ticker, stacked on a shared date axis (titles = `CHARTS`)."""
    x = rows["session_date"].to_numpy()
    fig = Figure(figsize=(10, 9), dpi=80)
    ohlc, returns, crossing, rsi = fig.subplots(
        4, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1, 1.5, 1]}
    )
    colors = np.where(rows["adj_close"] >= rows["adj_open"], UP, DOWN)
    ohlc.vlines(x, rows["adj_low"], rows["adj_high"], colors=colors, linewidth=0.8)
    ohlc.vlines(x, rows["adj_open"], rows["adj_close"], colors=colors, linewidth=3)
    for name, color in SMA_COLORS.items():
        ohlc.plot(x, rows[name], color=color, linewidth=1, label=name.upper().replace("_", " "))

    pct = rows["return_1d"] * 100
    returns.vlines(x, 0, pct, colors=np.where(pct >= 0, UP, DOWN), linewidth=1.5)

    crossing.plot(x, rows["adj_close"], color="0.75", linewidth=0.8, label="adj close")
    for name in ("sma_50", "sma_200"):
        crossing.plot(x, rows[name], color=SMA_COLORS[name], label=name.upper().replace("_", " "))
    for kind, marker, color in (("golden", "^", UP), ("death", "v", DOWN)):
        at = crosses[crosses["cross"] == kind]
        crossing.scatter(
            at["session_date"],
            at["sma_50"],
            marker=marker,
            color=color,
            s=90,
            zorder=3,
            label=f"{kind} cross",
        )

    rsi.plot(x, rows["rsi_14"], color="#5e35b1")
    for level in (30, 70):
        rsi.axhline(level, color="0.5", linestyle="--", linewidth=0.8)
    rsi.set_ylim(0, 100)

    for ax, title in zip(fig.axes, CHARTS, strict=True):
        ax.set_title(title, loc="left", fontsize="medium")
        ax.grid(alpha=0.3)
    ohlc.legend(loc="upper left", fontsize="small")
    crossing.legend(loc="upper left", fontsize="small")
    fig.suptitle(f"{ticker}: last {len(rows)} sessions to {pd.Timestamp(x[-1]).date()}")
    fig.subplots_adjust(left=0.08, right=0.98, top=0.93, bottom=0.05, hspace=0.35)
    return fig


def png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    return buffer.getvalue()


def ticker_page(ticker: str, rows: pd.DataFrame, crosses: pd.DataFrame, png: bytes) -> str:
    latest = rows.iloc[[-1]][
        ["session_date", "adj_close", "return_1d", "sma_20", "sma_50", "sma_200", "rsi_14"]
    ]
    cross_table = (
        crosses[["session_date", "cross", "sma_50", "sma_200"]].to_html(
            index=False, border=0, float_format="{:.2f}".format
        )
        if len(crosses)
        else "<p>No SMA 50 / SMA 200 crossover in this window.</p>"
    )
    image = base64.b64encode(png).decode()
    charts = html.escape("; ".join(CHARTS))
    body = f"""<h1>{html.escape(ticker)}</h1>
<p>From gold.daily_features (adjusted prices, TA-Lib indicators). Charts: {charts}.</p>
<img alt="{charts}" src="data:image/png;base64,{image}">
<h2>Latest session</h2>
{latest.to_html(index=False, border=0, float_format="{:.4f}".format)}
<h2>SMA 50 / SMA 200 crossovers</h2>
{cross_table}"""
    return PAGE.format(title=f"{html.escape(ticker)} daily report", body=body)


def index_page(folder: Path) -> str:
    links = "\n".join(
        f'<li><a href="{quote(path.name)}">{html.escape(path.stem)}</a></li>'
        for path in sorted(folder.glob("*.html"))
        if path.name != "index.html"
    )
    return PAGE.format(
        title="MarketFlow daily reports", body=f"<h1>Daily reports</h1><ul>{links}</ul>"
    )


@dg.asset(
    key=["gold", "ticker_reports"],
    tags=cadence.DAILY,
    group_name="gold",
    kinds={"python", "html"},
    deps=[dg.AssetKey(["gold", "daily_features"])],
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=WAREHOUSE_POOL,
    retry_policy=WAREHOUSE_RETRY_POLICY,
)
def gold_ticker_reports(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, lake: LakeResource
) -> dg.MaterializeResult:
    """Per-ticker dashboards of the last 252 sessions: adjusted OHLC with SMA 20/50/200, daily
    returns, SMA 50/200 golden and death crosses, RSI 14 (from gold/daily_features).

    One self-contained HTML file per ticker (charts embedded as PNG) under
    $MARKETFLOW_HOME/reports/daily/, with index.html; the metadata gives their paths, lists
    the crossovers and previews the first tickers' charts inline. Files, because they open
    anywhere without the UI, a server or SQL, and scale to any universe; only a few previews
    are embedded, because metadata lives in the Dagster event log and every ticker's images
    would add megabytes to it per materialization. Tag a run `marketflow/tickers=XYZ` to
    render and preview only XYZ. Unpartitioned: a report shows the latest sessions, so a
    backfill renders it once."""
    recent = read_recent(warehouse, ticker_scope(context))
    folder = reports_dir(lake)
    folder.mkdir(parents=True, exist_ok=True)
    crosses = ma_crossovers(recent)
    previews = []
    for ticker, rows in recent.groupby("ticker", sort=True):
        ticker_crosses = crosses[crosses["ticker"] == ticker]
        png = png_bytes(ticker_figure(ticker, rows, ticker_crosses))
        path = folder / f"{ticker}.html"
        path.write_text(ticker_page(ticker, rows, ticker_crosses, png), encoding="utf-8")
        if len(previews) < PREVIEW_TICKERS:
            previews.append(
                f"**{ticker}** ({path})\n\n![{ticker}](data:image/png;base64,"
                f"{base64.b64encode(png).decode()})"
            )
    index = folder / "index.html"
    index.write_text(index_page(folder), encoding="utf-8")
    return dg.MaterializeResult(
        metadata={
            "index": dg.MetadataValue.path(str(index)),
            "reports": dg.MetadataValue.int(int(recent["ticker"].nunique())),
            "as_of": str(recent["session_date"].max().date()) if len(recent) else "no rows",
            "crossovers": dg.MetadataValue.md(
                crosses.assign(session_date=crosses["session_date"].dt.date).to_markdown(
                    index=False, floatfmt=".2f"
                )
                if len(crosses)
                else "_none_"
            ),
            "preview": dg.MetadataValue.md("\n\n".join(previews) or "_no rows_"),
        }
    )
