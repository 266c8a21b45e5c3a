"""gold/ticker_reports: per-ticker HTML dashboards and the UI preview, from gold.daily_features."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from marketflow_assets.assets.reports import (
    CHARTS,
    REPORT_SESSIONS,
    _charts_of,
    _positions_in_charts,
    ticker_chart,
)
from marketflow_assets.transforms.indicators import ma_crossovers
from marketflow_tests.helpers import make_settings, materialize, output_metadata, table

DAILY = ["raw/daily_bars", "bronze/daily_bars", "silver/corporate_actions", "silver/daily_bars"]
REPORTS = ["gold", "ticker_reports"]
# ~445 sessions: SMA 200 is set over the last 252; KO crosses both ways in them (simulator).
RANGE = ("2022-09-01", "2024-06-07")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One range run of the whole chain, as `dagster asset materialize --partition-range`."""
    settings = make_settings(tmp_path_factory.mktemp("reports") / "home", tickers="KO,AAPL")
    result = materialize(
        settings,
        select=[*DAILY, "gold/daily_features", "gold/ticker_reports"],
        partition_range=RANGE,
    )
    return settings, output_metadata(result, REPORTS)


def recent_features(settings, ticker: str) -> pd.DataFrame:
    features = table(settings, "gold.daily_features", "ticker, session_date")
    return features[features["ticker"] == ticker].tail(REPORT_SESSIONS).reset_index(drop=True)


def expected_crosses(rows: pd.DataFrame) -> dict[str, str]:
    """Sign changes of SMA 50 - SMA 200, computed here independently of the asset."""
    sign = np.sign(rows["sma_50"] - rows["sma_200"]).to_numpy()
    at = np.flatnonzero((sign[1:] != sign[:-1]) & (sign[1:] != 0) & ~np.isnan(sign[:-1])) + 1
    return {
        f"{rows['session_date'].iloc[i]:%Y-%m-%d}": "golden" if sign[i] > 0 else "death" for i in at
    }


SVG = "{http://www.w3.org/2000/svg}"


def parse_svg(text: str) -> ET.Element:
    """The chart must be well-formed standalone SVG (browsers drop a malformed inline one)."""
    root = ET.fromstring(text)
    assert root.tag == f"{SVG}svg" and (root.get("width"), root.get("height")) == ("800", "720")
    return root


def test_every_ticker_gets_a_self_contained_page_and_the_index_links_them(built):
    settings, meta = built
    folder = settings.home / "reports" / "daily"
    assert meta["index"] == str(folder / "index.html")
    assert meta["reports"] == 2 and meta["as_of"] == RANGE[1]
    index = (folder / "index.html").read_text()
    assert 'href="AAPL.html"' in index and 'href="KO.html"' in index

    page = (folder / "KO.html").read_text()
    assert all(title in page for title in CHARTS)
    charts = re.findall(r"<svg .*?</svg>", page, flags=re.S)
    assert len(charts) == 1
    parse_svg(charts[0])
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from elsewhere
    crosses = expected_crosses(recent_features(settings, "KO"))
    assert set(crosses.values()) == {"golden", "death"}
    section = page.split("<h2>SMA 50 / SMA 200 crossovers</h2>")[1]
    assert re.findall(r"\d{4}-\d{2}-\d{2}", section) == list(crosses)
    assert re.findall(r"golden|death", section) == list(crosses.values())


def test_metadata_previews_the_charts_and_lists_the_crossovers(built):
    settings, meta = built
    previews = re.findall(r"!\[(\S+)\]\(data:image/svg\+xml;base64,([^)]+)\)", meta["preview"])
    assert [ticker for ticker, _ in previews] == ["AAPL", "KO"]
    for _, svg in previews:
        parse_svg(base64.b64decode(svg).decode())
    for ticker in ("AAPL", "KO"):
        for day, kind in expected_crosses(recent_features(settings, ticker)).items():
            assert re.search(rf"{ticker}\s*\|\s*{day}\s*\|.*\|\s*{kind}", meta["crossovers"])


def test_chart_has_the_four_charts_and_one_marker_per_cross(built):
    settings, _ = built
    rows = recent_features(settings, "KO")
    crosses = ma_crossovers(rows)
    root = parse_svg(ticker_chart("KO", rows, crosses))
    assert [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "title"] == list(CHARTS)
    legends = [g.find(f"{SVG}text").text for g in root.iter(f"{SVG}g")]
    assert legends[:3] == ["SMA 20", "SMA 50", "SMA 200"]
    assert {"golden cross", "death cross"} <= set(legends[3:])
    paths = [p.get("class") for p in root.iter(f"{SVG}path")]
    expected = list(expected_crosses(rows).values())
    assert paths.count("golden-cross") == expected.count("golden") > 0
    assert paths.count("death-cross") == expected.count("death") > 0
    # Three SMA lines, the close and two SMAs of the crossover chart, and RSI: 7 lines.
    assert paths.count("line") == 7


def test_chart_survives_warm_up_gaps_and_a_single_session():
    rows = pd.DataFrame(
        {
            "session_date": pd.to_datetime(["2024-06-03"]),
            **{c: [10.0] for c in ("adj_open", "adj_high", "adj_low", "adj_close")},
            **{c: [np.nan] for c in ("return_1d", "sma_20", "sma_50", "sma_200", "rsi_14")},
        }
    )
    root = parse_svg(ticker_chart("A&B", rows, ma_crossovers(rows.assign(ticker="A&B"))))
    assert root.find(f"{SVG}text").text == "A&B: last 1 sessions to 2024-06-03"
    # Only the close is drawn: every indicator is still warming up.
    assert [p.get("class") for p in root.iter(f"{SVG}path")].count("line") == 1


def test_a_ticker_scoped_run_renders_only_that_ticker(built):
    settings, _ = built
    result = materialize(settings, select=["gold/ticker_reports"], tickers=["KO"])
    meta = output_metadata(result, REPORTS)
    assert meta["reports"] == 1
    assert re.findall(r"!\[(\S+)\]", meta["preview"]) == ["KO"]
    assert "AAPL.html" in (settings.home / "reports" / "daily" / "index.html").read_text()


def test_crossovers_need_both_averages_and_stay_within_a_ticker():
    frame = pd.DataFrame(
        {
            "ticker": ["A"] * 5 + ["B"] * 3,
            "session_date": pd.to_datetime(["2024-01-01", *["2024-01-02"] * 7]),
            "sma_50": [1.0, 2.0, 3.0, 2.0, 2.0, 1.0, 1.0, 3.0],
            "sma_200": [np.nan, 2.5, 2.5, 2.5, 1.0, 2.0, 2.0, 2.0],
        }
    )
    crosses = ma_crossovers(frame)
    assert crosses.index.tolist() == [2, 3, 4, 7]
    assert crosses["cross"].tolist() == ["golden", "death", "golden", "golden"]


def test_coordinates_format_like_printf_on_and_off_the_canvas():
    from marketflow_assets import charts

    values = np.array([0.0, 12.34, 799.96, 1599.9, -3.25, 5000.0, np.nan])
    assert charts._num(values).tolist() == [
        "0.0",
        "12.3",
        "800.0",
        "1599.9",
        "-3.2",
        "5000.0",
        "nan",
    ]
    assert charts._cat("M", charts._num(values[:2]), ",", "1.0") == "M0.0,1.0M12.3,1.0"
    assert charts._cat("M", charts._num(values[:0]), ",") == ""  # nothing to draw


def test_page_tables_show_dates_numbers_missing_values_and_escape_text():
    from marketflow_assets.assets.reports import html_table

    table = html_table(
        {
            "session_date": np.array(["2024-06-07"], dtype="datetime64[us]"),
            "rsi_14": np.array([np.nan]),
            "cross": np.array(["<golden>"], dtype=object),
            "sma_50": np.array([1.23456]),
        },
        2,
    )
    assert "<th>session_date</th><th>rsi_14</th><th>cross</th><th>sma_50</th>" in table
    assert "<td>2024-06-07</td><td>NaN</td><td>&lt;golden&gt;</td><td>1.23</td>" in table


def test_all_tickers_drawn_at_once_equal_each_ticker_drawn_alone():
    """The report step draws every ticker's series in one pass (`ticker_charts`, `render_pages`);
    nothing may leak between neighbouring tickers: each page equals that ticker's own."""
    from marketflow_assets.assets.reports import (
        CROSS_COLUMNS,
        FEATURE_COLUMNS,
        render_pages,
        ticker_page,
    )

    rng = np.random.default_rng(7)
    frames = []
    days = pd.bdate_range("2025-01-02", periods=260)
    for i, n in enumerate((260, 1, 37, 260, 120)):
        close = 50 * np.exp(np.cumsum(rng.normal(0, 0.03, n)))
        frame = pd.DataFrame({"ticker": f"T{i}", "session_date": days[-n:]})
        frame["adj_open"] = close * (1 + rng.normal(0, 0.01, n))
        frame["adj_close"] = close
        frame["adj_high"] = np.maximum(frame["adj_open"], close) * 1.01
        frame["adj_low"] = np.minimum(frame["adj_open"], close) * 0.99
        frame["return_1d"] = np.r_[np.nan, np.diff(close) / close[:-1]]
        for window in (20, 50, 200):
            frame[f"sma_{window}"] = pd.Series(close).rolling(window // 4).mean().to_numpy()
        frame["rsi_14"] = rng.uniform(0, 100, n)
        frames.append(frame)
    frames[3].loc[10:30, ["sma_20", "sma_50", "adj_close"]] = np.nan  # gaps inside a line
    frames[4][["adj_open", "adj_high", "adj_low", "adj_close"]] = 7.0  # a flat price
    recent = pd.concat(frames, ignore_index=True)
    crosses = ma_crossovers(recent)
    assert crosses["ticker"].nunique() >= 2  # markers on several charts

    columns = {c: recent[c].to_numpy() for c in ("ticker", *FEATURE_COLUMNS)}
    pages = list(render_pages(columns, crosses))
    assert [ticker for ticker, _, _ in pages] == [f"T{i}" for i in range(5)]
    for ticker, svg, page in pages:
        rows = recent[recent["ticker"] == ticker].reset_index(drop=True)
        own = crosses[crosses["ticker"] == ticker][list(CROSS_COLUMNS)]
        alone = ticker_chart(ticker, rows, own)
        assert svg == alone
        assert page == ticker_page(ticker, rows, own, alone)
        parse_svg(svg)


def test_crossover_positions_are_each_charts_own_session_index():
    rng = np.random.default_rng(0)
    for _ in range(200):
        lens = rng.integers(0, 30, rng.integers(1, 6))
        bounds = np.concatenate([[0], np.cumsum(lens)])
        days = [np.sort(rng.choice(np.arange(18000, 18400), n, replace=False)) for n in lens]
        dates = np.concatenate(days).astype("datetime64[D]").astype("datetime64[ns]")
        chart = rng.integers(0, len(lens), rng.integers(0, 20))
        when = rng.integers(17990, 18410, len(chart)).astype("datetime64[D]")
        when = when.astype("datetime64[ns]")
        expected = [
            np.searchsorted(dates[bounds[c] : bounds[c + 1]], d)
            for c, d in zip(chart.tolist(), when, strict=True)
        ]
        assert _positions_in_charts(dates, bounds, chart, when).tolist() == expected


def test_each_crossover_finds_its_tickers_chart():
    rng = np.random.default_rng(1)
    names = np.array([f"T{i:02d}" for i in range(12)], dtype=object)
    for _ in range(200):
        charts = rng.choice(names, rng.integers(0, 8))  # unsorted, repeats, some empty charts
        lens = rng.integers(0, 4, len(charts))
        bounds = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        tickers = np.repeat(charts, lens).astype(object)
        wanted = rng.choice(names, rng.integers(0, 15)).astype(object)
        last = {str(tickers[b]): i for i, b in enumerate(bounds[:-1].tolist()) if b < bounds[i + 1]}
        expected = [last.get(str(t), -1) for t in wanted]
        assert _charts_of(tickers, bounds, wanted).tolist() == expected
