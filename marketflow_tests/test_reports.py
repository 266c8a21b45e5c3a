"""gold/ticker_reports: per-ticker HTML dashboards and the UI preview, from gold.daily_features."""

from __future__ import annotations

import base64
import re
import struct

import numpy as np
import pandas as pd
import pytest

from marketflow_assets.assets.reports import CHARTS, REPORT_SESSIONS, ticker_figure
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


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", png[16:24])


def test_every_ticker_gets_a_self_contained_page_and_the_index_links_them(built):
    settings, meta = built
    folder = settings.home / "reports" / "daily"
    assert meta["index"] == str(folder / "index.html")
    assert meta["reports"] == 2 and meta["as_of"] == RANGE[1]
    index = (folder / "index.html").read_text()
    assert 'href="AAPL.html"' in index and 'href="KO.html"' in index

    page = (folder / "KO.html").read_text()
    assert all(title in page for title in CHARTS)
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert "http" not in page.replace(images[0], "")  # nothing fetched from elsewhere
    assert len(images) == 1 and png_size(base64.b64decode(images[0])) == (800, 720)
    crosses = expected_crosses(recent_features(settings, "KO"))
    assert set(crosses.values()) == {"golden", "death"}
    section = page.split("<h2>SMA 50 / SMA 200 crossovers</h2>")[1]
    assert re.findall(r"\d{4}-\d{2}-\d{2}", section) == list(crosses)
    assert re.findall(r"golden|death", section) == list(crosses.values())


def test_metadata_previews_the_charts_and_lists_the_crossovers(built):
    settings, meta = built
    previews = re.findall(r"!\[(\S+)\]\(data:image/png;base64,([^)]+)\)", meta["preview"])
    assert [ticker for ticker, _ in previews] == ["AAPL", "KO"]
    assert all(png_size(base64.b64decode(png)) == (800, 720) for _, png in previews)
    for ticker in ("AAPL", "KO"):
        for day, kind in expected_crosses(recent_features(settings, ticker)).items():
            assert re.search(rf"{ticker}\s*\|\s*{day}\s*\|.*\|\s*{kind}", meta["crossovers"])


def test_figure_has_the_four_charts_and_one_marker_per_cross(built):
    settings, _ = built
    rows = recent_features(settings, "KO")
    crosses = ma_crossovers(rows)
    fig = ticker_figure("KO", rows, crosses)
    assert [ax.get_title(loc="left") for ax in fig.axes] == list(CHARTS)
    ohlc, _, crossing, rsi = fig.axes
    assert {line.get_label() for line in ohlc.get_lines()} == {"SMA 20", "SMA 50", "SMA 200"}
    markers = {c.get_label(): len(c.get_offsets()) for c in crossing.collections}
    expected = expected_crosses(rows)
    assert markers == {
        "golden cross": list(expected.values()).count("golden"),
        "death cross": list(expected.values()).count("death"),
    }
    assert rsi.get_ylim() == (0, 100)


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
