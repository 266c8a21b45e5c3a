"""Bronze keeps, per (ticker, ts, interval), the rows of the latest fetch (`latest_fetch_rows`):
the one-fetch shortcut a backfill takes keeps exactly what the general rule keeps."""

from __future__ import annotations

import pandas as pd

from marketflow_assets.transforms.payloads import latest_fetch_rows

EARLY, LATE = pd.Timestamp("2024-06-07 22:00", tz="UTC"), pd.Timestamp("2024-06-10 22:00", tz="UTC")


def typed(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["ticker", "ts", "close", "fetched_at", "fetch_id"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    frame["interval"] = "1d"
    # A batch of a larger read: its labels are the read's, not 0..n.
    return frame.set_axis(range(100, 100 + len(frame)))


def test_one_fetch_keeps_every_row_in_order_duplicates_and_unparsed_times_included():
    rows = [
        ("B", "2024-06-04", 2.0, EARLY, "f1"),
        ("A", "2024-06-03", 1.0, EARLY, "f1"),
        ("A", "2024-06-03", 1.5, EARLY, "f1"),  # a duplicate within the fetch: silver judges it
        ("A", None, 3.0, EARLY, "f1"),  # a time that did not parse: silver rejects it
    ]
    kept = latest_fetch_rows(typed(rows))
    assert kept["close"].tolist() == [2.0, 1.0, 1.5, 3.0]
    assert kept.index.tolist() == [0, 1, 2, 3]


def test_the_latest_fetch_wins_per_bar_and_bars_it_did_not_serve_stay():
    rows = [
        ("A", "2024-06-03", 1.0, LATE, "f2"),
        ("A", "2024-06-03", 0.9, EARLY, "f1"),  # superseded by f2
        ("A", "2024-06-04", 2.0, EARLY, "f1"),  # only f1 has it
        ("B", "2024-06-03", 5.0, EARLY, "f1"),
        ("B", "2024-06-03", 5.1, EARLY, "f1b"),  # same clock, landed later: wins
    ]
    kept = latest_fetch_rows(typed(rows))
    assert kept[["ticker", "close", "fetch_id"]].values.tolist() == [
        ["A", 1.0, "f2"],
        ["A", 2.0, "f1"],
        ["B", 5.1, "f1b"],
    ]
    assert kept.index.tolist() == [0, 1, 2]
