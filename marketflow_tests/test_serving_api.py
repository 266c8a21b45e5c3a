"""The HTTP API on snapshots built by the real graph from the simulator, served by a real
uvicorn server on a free loopback port: values equal the warehouse's, pagination, CSV and
Parquet, ETag/304, health, API keys, bad input, schema fuzzing, and readers that never block a
run (a reader and the API keep reading while a multi-session run publishes a new snapshot)."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass, field

import duckdb
import httpx
import pandas as pd
import pytest
import uvicorn
from fastapi.testclient import TestClient

from marketflow_assets import cadence
from marketflow_assets.api import create_app
from marketflow_assets.serving import current_snapshot_path
from marketflow_assets.settings import Settings
from marketflow_tests.helpers import make_settings, materialize, query

pytestmark = pytest.mark.slow

HISTORY = ("2024-05-30", "2024-05-31")
INCREMENT = ("2024-06-03", "2024-06-04")  # a multi-session run while readers read
UNIVERSE = "AAPL,MSFT,KO"
TICKER = "AAPL"


@dataclass
class Served:
    settings: Settings
    base_url: str
    first_snapshot: str
    final_snapshot: str
    run_ok: bool
    reader_errors: list[str] = field(default_factory=list)
    reader_reads: int = 0
    reader_snapshots: set[str] = field(default_factory=set)
    api_errors: list[str] = field(default_factory=list)
    api_snapshots: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def snapshot_id(settings: Settings) -> str:
    return current_snapshot_path(settings).resolve().stem


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("serving") / "home", tickers=UNIVERSE)
    materialize(settings, partition_range=HISTORY)  # the whole graph, snapshot included
    first = snapshot_id(settings)

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    server_thread = threading.Thread(target=server.run, daemon=True)
    server_thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    result = Served(settings, base, first, first, run_ok=False)
    stop = threading.Event()

    def reader() -> None:
        # Holds the current snapshot open for the whole run, as a notebook would.
        try:
            con = duckdb.connect(str(current_snapshot_path(settings)), read_only=True)
            while not stop.is_set():
                result.reader_snapshots.add(
                    con.execute("SELECT any_value(snapshot_id) FROM serving.manifest").fetchone()[0]
                )
                con.execute("SELECT count(*), max(session_date) FROM silver.daily_bars").fetchone()
                result.reader_reads += 1
                time.sleep(0.02)
            con.close()
        except Exception as exc:  # recorded, asserted by the test
            result.reader_errors.append(repr(exc))

    def api_client() -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            while not stop.is_set():
                for url in ("/v1/prices/latest", f"/v1/bars/{TICKER}?limit=2"):
                    try:
                        response = client.get(url)
                        if response.status_code != 200:
                            result.api_errors.append(f"{url}: {response.status_code}")
                        else:
                            result.api_snapshots.append(response.json()["snapshot"])
                    except Exception as exc:
                        result.api_errors.append(f"{url}: {exc!r}")
                time.sleep(0.02)

    threads = [threading.Thread(target=reader), threading.Thread(target=api_client)]
    for thread in threads:
        thread.start()
    try:
        run = materialize(
            settings,
            select=cadence.daily_assets | cadence.reference_assets,
            partition_range=INCREMENT,
            raise_on_error=False,
        )
        time.sleep(0.3)  # a few more requests on the new snapshot
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    result.run_ok = run.success
    result.final_snapshot = snapshot_id(settings)
    yield result
    server.should_exit = True
    server_thread.join(timeout=10)


@pytest.fixture(scope="module")
def http(served):
    with httpx.Client(base_url=served.base_url, timeout=30) as client:
        yield client


def warehouse(served: Served, sql: str, params=None) -> pd.DataFrame:
    return query(served.settings, sql, params)


def test_readers_never_block_a_run_and_the_api_switches_to_the_new_snapshot(served, http):
    assert served.run_ok, "the run failed while readers held the snapshot"
    assert served.reader_errors == [] and served.reader_reads > 0
    assert served.reader_snapshots == {served.first_snapshot}  # one consistent snapshot
    assert served.api_errors == []
    assert served.final_snapshot != served.first_snapshot
    assert served.api_snapshots[0] == served.first_snapshot
    assert served.api_snapshots[-1] == served.final_snapshot
    health = http.get("/v1/health").json()
    assert health["snapshot"]["id"] == served.final_snapshot
    assert health["snapshot"]["latest_session"] == INCREMENT[1]


def test_prices_latest_equals_the_warehouse(served, http):
    body = http.get("/v1/prices/latest").json()
    got = pd.DataFrame(body["data"]).set_index("ticker").sort_index()
    expected = warehouse(
        served,
        "SELECT b.ticker, b.close, b.volume, b.adj_close, f.return_1d FROM silver.daily_bars b "
        "LEFT JOIN gold.daily_features f USING (ticker, session_date) WHERE b.session_date = ? "
        "ORDER BY 1",
        [INCREMENT[1]],
    ).set_index("ticker")
    assert set(got["session_date"]) == {INCREMENT[1]}
    pd.testing.assert_frame_equal(got[expected.columns], expected, check_dtype=False)
    two = http.get("/v1/prices/latest", params={"tickers": "msft,AAPL"}).json()["data"]
    assert [r["ticker"] for r in two] == ["AAPL", "MSFT"]


def all_pages(http, url: str, params: dict) -> list[dict]:
    rows, cursor, pages = [], None, 0
    while True:
        body = http.get(url, params={**params, **({"cursor": cursor} if cursor else {})}).json()
        rows += body["data"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return rows
        assert pages < 100


@pytest.mark.parametrize("adjusted", [True, False])
def test_bars_equal_the_warehouse_page_by_page(served, http, adjusted):
    rows = all_pages(http, f"/v1/bars/{TICKER}", {"adjusted": str(adjusted).lower(), "limit": 3})
    prefix = "adj_" if adjusted else ""
    expected = warehouse(
        served,
        f"SELECT strftime(session_date, '%Y-%m-%d') AS session_date, {prefix}open AS open, "
        f"{prefix}high AS high, {prefix}low AS low, {prefix}close AS close, "
        f"{prefix}volume AS volume, dividend, split_ratio FROM silver.daily_bars "
        "WHERE ticker = ? ORDER BY session_date",
        [TICKER],
    )
    got = pd.DataFrame(rows)
    assert got["session_date"].is_unique  # every row exactly once
    pd.testing.assert_frame_equal(got[expected.columns], expected, check_dtype=False)
    window = http.get(
        f"/v1/bars/{TICKER}", params={"start": "2024-05-30", "end": "2024-06-03"}
    ).json()["data"]
    assert [r["session_date"] for r in window] == ["2024-05-30", "2024-05-31", "2024-06-03"]


def test_one_minute_bars_are_the_served_sessions(served, http):
    rows = all_pages(http, f"/v1/bars/{TICKER}", {"interval": "1m", "limit": 500})
    expected = warehouse(
        served,
        "SELECT strftime(ts AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%SZ') AS ts, close, volume "
        "FROM silver.intraday_bars_1m WHERE ticker = ? ORDER BY ts",
        [TICKER],
    )
    got = pd.DataFrame(rows)
    pd.testing.assert_frame_equal(got[expected.columns], expected, check_dtype=False)
    assert got["session_date"].nunique() == 2


def test_features_round_trip_as_json_csv_and_parquet(served, http):
    url = f"{served.base_url}/v1/features/{TICKER}?fields=sma_20,rsi_14,return_1d"
    as_json = pd.DataFrame(http.get(url).json()["data"])
    as_csv = pd.read_csv(url + "&format=csv")
    as_parquet = pd.read_parquet(url + "&format=parquet")  # pandas reads the URL itself
    expected = warehouse(
        served,
        "SELECT ticker, session_date, sma_20, rsi_14, return_1d FROM gold.daily_features "
        "WHERE ticker = ? ORDER BY session_date",
        [TICKER],
    )
    assert list(as_json.columns) == list(expected.columns)
    for frame in (as_json, as_csv, as_parquet):
        frame = frame.assign(session_date=pd.to_datetime(frame["session_date"]))
        pd.testing.assert_frame_equal(
            frame,
            expected.assign(session_date=pd.to_datetime(expected["session_date"])),
            check_dtype=False,
        )
    paged = http.get(url + "&format=csv&limit=2")
    assert paged.headers["x-next-cursor"] and len(pd.read_csv(io.BytesIO(paged.content))) == 2
    latest = http.get("/v1/features/latest", params={"fields": "rsi_14"}).json()["data"]
    assert {r["session_date"] for r in latest} == {INCREMENT[1]} and set(latest[0]) == {
        "ticker",
        "session_date",
        "rsi_14",
    }


def test_reference_endpoints_equal_the_warehouse(served, http):
    symbols = http.get("/v1/symbols").json()["data"]
    expected = warehouse(served, "SELECT ticker, name, sector FROM silver.symbols ORDER BY 1")
    assert [(s["ticker"], s["name"], s["sector"]) for s in symbols] == list(
        expected.itertuples(index=False, name=None)
    )
    sector = expected["sector"].iloc[0]
    only = http.get("/v1/symbols", params={"sector": sector}).json()["data"]
    assert only and {s["sector"] for s in only} == {sector}
    one = http.get(f"/v1/symbols/{TICKER.lower()}").json()
    assert one["data"]["ticker"] == TICKER and one["snapshot"] == served.final_snapshot
    sectors = all_pages(http, "/v1/sectors/daily", {"limit": 7})
    expected_sectors = warehouse(served, "SELECT count(*) AS n FROM gold.sector_daily")
    assert len(sectors) == expected_sectors["n"].iloc[0]
    assert len({(r["session_date"], r["sector"]) for r in sectors}) == len(sectors)
    actions = http.get(f"/v1/corporate-actions/{TICKER}").json()["data"]
    expected_actions = warehouse(
        served, "SELECT count(*) AS n FROM silver.corporate_actions WHERE ticker = ?", [TICKER]
    )
    assert len(actions) == expected_actions["n"].iloc[0]


def test_etag_and_cache_control(served, http):
    first = http.get(f"/v1/bars/{TICKER}")
    assert first.headers["etag"] == f'"{served.final_snapshot}"'
    assert "max-age" in first.headers["cache-control"]
    again = http.get(f"/v1/bars/{TICKER}", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    stale = http.get(f"/v1/bars/{TICKER}", headers={"If-None-Match": '"older-snapshot"'})
    assert stale.status_code == 200


def test_health_measures_staleness_against_the_exchange_calendar(served):
    after_close = dt.datetime(2024, 6, 4, 22, 0, tzinfo=dt.UTC)  # the snapshot's last session
    on_time = TestClient(create_app(served.settings, now=after_close)).get("/v1/health").json()
    assert on_time["status"] == "ok" and on_time["freshness"]["sessions_behind"] == 0
    # The simulator clock (Friday 2024-06-07 evening): three more sessions have closed.
    stale = TestClient(create_app(served.settings)).get("/v1/health").json()
    assert stale["status"] == "stale"
    assert stale["freshness"]["sessions_behind"] == 3
    assert stale["freshness"]["latest_closed_session"] == "2024-06-07"


def test_fundamentals_of_the_real_graph_are_served_point_in_time(served, http):
    """The simulator's statements go through the whole graph into the snapshot; the endpoint
    serves what was known at `as_of` (the 404 before fundamentals exist, and the point-in-time
    rules on hand-made facts, are in test_serving_fundamentals)."""
    body = http.get(f"/v1/fundamentals/{TICKER}").json()
    assert body["snapshot"] == served.final_snapshot
    assert body["data"], "the simulator's statements are served"
    as_of = dt.date.fromisoformat(body["as_of"])
    assert all(dt.date.fromisoformat(f["known_at"]) <= as_of for f in body["data"])
    assert http.get("/v1/fundamentals/ZZZZ").status_code == 404


def test_api_keys_guard_data_but_not_health_and_are_never_logged(served, caplog):
    client = TestClient(create_app(served.settings, api_keys=frozenset({"s3cret-key"})))
    with caplog.at_level(logging.INFO, logger="marketflow.api.access"):
        assert client.get("/v1/prices/latest").status_code == 401
        wrong = client.get("/v1/prices/latest", headers={"X-API-Key": "nope"})
        assert wrong.status_code == 401 and wrong.json()["parameter"] == "X-API-Key"
        ok = client.get("/v1/prices/latest", headers={"X-API-Key": "s3cret-key"})
        assert ok.status_code == 200
        assert client.get("/v1/health").status_code == 200
    lines = [json.loads(r.getMessage()) for r in caplog.records]
    assert [line["status"] for line in lines] == [401, 401, 200, 200]
    assert all(line["latency_ms"] >= 0 for line in lines)
    assert lines[2]["snapshot"] == served.final_snapshot
    assert "s3cret-key" not in caplog.text


def test_a_repeat_is_answered_from_the_cache_as_the_endpoint_answered(served, caplog):
    """A repeated request on the same snapshot comes from the snapshot's response cache before
    routing, with the endpoint's body and headers; API keys, 304 and the access log still
    apply to it."""
    app = create_app(served.settings, api_keys=frozenset({"s3cret-key"}))
    client = TestClient(app)
    key = {"X-API-Key": "s3cret-key"}
    url = f"/v1/bars/{TICKER}?limit=2&format=csv"
    with caplog.at_level(logging.INFO, logger="marketflow.api.access"):
        first = client.get(url, headers=key)
        cached = app.state.snapshots.get().responses.get(("/v1/bars/AAPL", b"limit=2&format=csv"))
        assert first.status_code == 200 and cached is not None
        again = client.get(url, headers=key)
        assert client.get(url).status_code == 401  # a cached page still needs a key
        not_modified = client.get(url, headers={**key, "If-None-Match": first.headers["etag"]})
    assert again.content == first.content
    for header in ("etag", "cache-control", "content-type", "x-snapshot-id", "x-next-cursor"):
        assert again.headers[header] == first.headers[header], header
    assert first.headers["content-type"] == "text/csv; charset=utf-8"
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified.headers["etag"] == f'"{served.final_snapshot}"'
    lines = [json.loads(r.getMessage()) for r in caplog.records]
    assert [line["status"] for line in lines] == [200, 200, 401, 304]
    assert lines[1]["snapshot"] == served.final_snapshot and lines[1]["bytes"] == len(first.content)
    assert "s3cret-key" not in caplog.text
    # The repeat is the cache's answer: what the cache holds is what the client gets.
    app.state.snapshots.get().responses._items[("/v1/bars/AAPL", b"limit=2&format=csv")] = (
        b"from-the-cache",
        cached[1],
        cached[2],
    )
    assert client.get(url, headers=key).content == b"from-the-cache"


@pytest.mark.parametrize(
    ("url", "status", "parameter"),
    [
        ("/v1/bars/..%2Fx", 400, "ticker"),
        ("/v1/bars/'; drop table silver.daily_bars; --", 400, "ticker"),
        ("/v1/bars/ÄPFEL", 400, "ticker"),
        ("/v1/bars/" + "A" * 500, 400, "ticker"),
        ("/v1/bars/NOPE", 404, "ticker"),
        ("/v1/bars/AAPL?start=2024-06-07&end=2024-06-01", 400, "start"),
        ("/v1/bars/AAPL?start=yesterday", 400, "start"),
        ("/v1/bars/AAPL?limit=20001", 400, "limit"),
        ("/v1/bars/AAPL?limit=0", 400, "limit"),
        ("/v1/bars/AAPL?interval=5m", 400, "interval"),
        ("/v1/bars/AAPL?interval=1m&adjusted=true", 400, "adjusted"),
        ("/v1/bars/AAPL?cursor=not-a-cursor", 400, "cursor"),
        ("/v1/bars/AAPL?format=xlsx", 400, "format"),
        ("/v1/features/AAPL?fields=sma_20,drop_table", 400, "fields"),
        ("/v1/features/latest?tickers=AAPL,../etc", 400, "tickers"),
        ("/v1/prices/latest?tickers=AAPL,NOPE", 404, "tickers"),
        ("/v1/fundamentals/AAPL?period_type=weekly", 400, "period_type"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_parameter(served, url, status, parameter):
    client = TestClient(create_app(served.settings))
    response = client.get(url)
    assert response.status_code == status, response.text
    assert response.json()["parameter"] == parameter
    # The warehouse and the snapshot are untouched by the SQL-looking input.
    assert client.get("/v1/bars/AAPL?limit=1").status_code == 200


def test_a_cursor_of_another_endpoint_is_refused(served, http):
    cursor = http.get(f"/v1/features/{TICKER}", params={"limit": 1}).json()["next_cursor"]
    refused = http.get(f"/v1/bars/{TICKER}", params={"cursor": cursor})
    assert refused.status_code == 400 and refused.json()["parameter"] == "cursor"


def test_no_input_gives_a_5xx_or_breaks_the_schema(served):
    """Schemathesis generates requests (valid and invalid) for every operation of the OpenAPI
    schema: no 5xx, and every response conforms to its documented status, type and schema."""
    # Imported here: schemathesis and hypothesis cost ~3 s of CPU to import, and every xdist
    # worker imports every test module when it collects.
    import schemathesis
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hypothesis_settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(served.settings))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 10
    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def fuzz(case):
            case.call_and_validate(checks=checks)

        fuzz()


def test_snapshot_is_readable_from_any_directory(served, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    con = duckdb.connect(str(current_snapshot_path(served.settings)), read_only=True)
    try:
        tables = {
            f"{s}.{t}"
            for s, t in con.execute(
                "SELECT table_schema, table_name FROM information_schema.tables"
            ).fetchall()
        }
    finally:
        con.close()
    for name in (
        "silver.daily_bars",
        "silver.symbols",
        "silver.corporate_actions",
        "silver.rejected_bars",
        "silver.intraday_bars_1m",
        "gold.daily_features",
        "gold.ma_crossovers",
        "gold.sector_daily",
        "gold.monthly_returns",
        "gold.hourly_bars",
        "ops.check_results",
        "serving.manifest",
    ):
        assert name in tables
