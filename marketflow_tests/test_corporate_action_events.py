"""The corporate-action events a daily response lands with (`corporate_action_events`): each
dividend or split with the previous valid close and the next priced row, per ticker, whatever
the row order and Yahoo's price-less rows."""

from __future__ import annotations

import math

import pandas as pd

from marketflow_assets.transforms.payloads import corporate_action_events

NAN = math.nan


def test_events_carry_the_previous_valid_close_and_the_next_priced_row():
    rows = [  # ticker, date, open, close, adj close, dividend, split
        ("A", "2024-06-07", 9.65, 9.8, 9.8, 0.0, 0.0),
        ("B", "2024-06-04", 50.0, 51.0, 51.0, 0.0, 2.0),  # B's first row: no previous close
        ("A", "2024-06-04", NAN, NAN, NAN, 0.0, 0.0),  # Yahoo's row without prices
        ("A", "2024-06-05", 9.7, 9.6, 9.6, 0.5, 0.0),
        ("A", "2024-06-03", 9.9, 10.0, 9.5, 0.0, 0.0),
        ("A", "2024-06-06", NAN, NAN, NAN, 0.0, 0.0),
        ("B", "2024-06-05", 25.5, 25.0, 25.0, 0.0, 0.0),
    ]
    frame = pd.DataFrame(
        rows, columns=["Ticker", "Date", "Open", "Close", "Adj Close", "Dividends", "Stock Splits"]
    )
    frame["Date"] = pd.to_datetime(frame["Date"]).dt.tz_localize("America/New_York")
    events = {e["ticker"]: e for e in corporate_action_events(frame.set_axis(range(10, 17)))}
    assert events.keys() == {"A", "B"}
    a, b = events["A"], events["B"]
    assert (a["date"], a["dividend"], a["split_ratio"]) == ("2024-06-05", 0.5, 1.0)
    assert (a["prev_close"], a["prev_adj_ratio"]) == (10.0, 0.95)
    assert (a["next_open"], a["next_date"], a["priced"]) == (9.65, "2024-06-07", True)
    assert (b["date"], b["split_ratio"], b["prev_close"]) == ("2024-06-04", 2.0, None)
    assert (b["next_open"], b["next_date"]) == (25.5, "2024-06-05")
