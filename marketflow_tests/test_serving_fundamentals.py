"""/v1/fundamentals once the fundamentals tables exist in the warehouse: point in time (only
facts known on `as_of` and not superseded as of it) and the ratios of that day."""

from __future__ import annotations

import duckdb
from fastapi.testclient import TestClient

from marketflow_assets.api import create_app
from marketflow_assets.serving import layout
from marketflow_assets.serving.publish import publish_snapshot
from marketflow_tests.helpers import make_settings
from marketflow_tests.test_serving_snapshot import build_warehouse

FACTS = """
CREATE TABLE silver.financial_facts AS SELECT * FROM (VALUES
    ('AAA', 'income', 'quarterly', DATE '2023-12-31', 'revenue', 100.0, 'USD',
     TIMESTAMPTZ '2024-02-01 21:00:00+00', TIMESTAMPTZ '2024-02-02 00:00:00+00',
     TIMESTAMPTZ '2024-03-01 00:00:00+00'),
    ('AAA', 'income', 'quarterly', DATE '2023-12-31', 'revenue', 110.0, 'USD',
     TIMESTAMPTZ '2024-03-01 00:00:00+00', TIMESTAMPTZ '2024-03-01 00:00:00+00', NULL),
    ('AAA', 'income', 'quarterly', DATE '2023-09-30', 'revenue', 90.0, 'USD',
     TIMESTAMPTZ '2023-11-01 21:00:00+00', TIMESTAMPTZ '2023-11-02 00:00:00+00', NULL),
    ('AAA', 'income', 'annual', DATE '2023-12-31', 'revenue', 400.0, 'USD',
     TIMESTAMPTZ '2024-02-01 21:00:00+00', TIMESTAMPTZ '2024-02-02 00:00:00+00', NULL)
) v(ticker, statement, period_type, period_end, line_item, value, currency, known_at,
    first_seen_at, superseded_at)
"""
RATIOS = """
CREATE TABLE gold.fundamentals_daily AS
SELECT ticker, session_date, 20.0 + day(session_date) AS pe_ttm, 1e9 AS market_cap,
    DATE '2023-12-31' AS latest_period_end, TIMESTAMPTZ '2024-02-01 21:00:00+00' AS latest_known_at
FROM silver.daily_bars
"""


def test_fundamentals_are_point_in_time(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    build_warehouse(warehouse)
    settings = make_settings(tmp_path / "home")
    con = duckdb.connect(str(warehouse))
    client = TestClient(create_app(settings))
    publish_snapshot(con, layout.serving_dir(settings), run_id="before")
    missing = client.get("/v1/fundamentals/AAA")
    assert missing.status_code == 404 and "not published" in missing.json()["detail"]

    con.execute(FACTS)
    con.execute(RATIOS)
    publish_snapshot(con, layout.serving_dir(settings), run_id="after")
    con.close()

    def revenue(as_of: str, **params) -> dict:
        body = client.get("/v1/fundamentals/AAA", params={"as_of": as_of, **params}).json()
        return body, {(r["period_type"], r["period_end"]): r["value"] for r in body["data"]}

    body, values = revenue("2024-02-15", period_type="quarterly")
    assert values == {("quarterly", "2023-12-31"): 100.0, ("quarterly", "2023-09-30"): 90.0}
    assert body["ratios"]["session_date"] == "2024-02-15" and body["ratios"]["pe_ttm"] == 35.0
    _, restated = revenue("2024-03-04", period_type="quarterly")
    assert restated[("quarterly", "2023-12-31")] == 110.0  # the restatement replaced it
    _, early = revenue("2024-01-10")
    assert early == {("quarterly", "2023-09-30"): 90.0}  # Q4 was not known yet
    _, latest_only = revenue("2024-03-04", limit=1)
    assert set(latest_only) == {("quarterly", "2023-12-31"), ("annual", "2023-12-31")}
