"""Dropped CSV/JSON files: parsed, claimed, landed in raw as source 'file', flowed downstream;
unreadable files rejected with a reason; idempotent across ticks; local folder and S3 alike."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import dagster as dg
import pytest

from marketflow_assets.automation.common import AUTOMATION_TAG, RANGE_END_TAG, RANGE_START_TAG
from marketflow_assets.automation.file_drops import FILE_BATCH_TAG
from marketflow_assets.ingestion.landing import DropRejected, parse_drop
from marketflow_assets.resources import TICKERS_TAG
from marketflow_assets.storage.object_store import LocalObjectStore
from marketflow_assets.storage.raw_lake import RawLake
from marketflow_tests.automation_support import (
    add_run,
    at,
    et,
    execute_request,
    target_keys,
    tick_sensor,
    without_dbt,
)
from marketflow_tests.checks_support import DAILY
from marketflow_tests.helpers import deployment_event_log_instance, materialize, query

SENSOR = "file_drops"
TODAY = dt.date(2024, 6, 7)
WEEK = ["2024-06-03", "2024-06-04", "2024-06-05", "2024-06-06", "2024-06-07"]


def yahoo_csv(days=WEEK, ticker_column: str | None = None, base: float = 100.0) -> str:
    header = ("Ticker," if ticker_column else "") + "Date,Open,High,Low,Close,Adj Close,Volume"
    lines = [header]
    for i, day in enumerate(days):
        price = base + i
        prefix = f"{ticker_column}," if ticker_column else ""
        lines.append(
            f"{prefix}{day},{price:.2f},{price + 2:.2f},{price - 1:.2f},{price + 1:.2f},"
            f"{price + 1:.2f},{1_000_000 + i}"
        )
    return "\n".join(lines) + "\n"


def json_bars(ticker: str, days=WEEK, base: float = 50.0) -> str:
    bars = [
        {
            "date": d,
            "open": base + i,
            "high": base + i + 1,
            "low": base + i - 1,
            "close": base + i + 0.5,
            "adj_close": base + i + 0.5,
            "volume": 2_000_000 + i,
        }
        for i, d in enumerate(days)
    ]
    return json.dumps({"ticker": ticker, "bars": bars})


# -- parsing -------------------------------------------------------------------------------------
def test_parse_csv_with_ticker_from_the_file_name_keeps_text_cells():
    dropped = parse_drop("landing/MSFT.csv", yahoo_csv().encode(), today=TODAY)
    assert dropped.tickers == ("MSFT",)
    assert (dropped.first, dropped.last) == (dt.date(2024, 6, 3), TODAY)
    assert list(dropped.frame.columns) == [
        "Ticker",
        "Date",
        "Open",
        "High",
        "Low",
        "Close",
        "Adj Close",
        "Volume",
    ]
    assert dropped.frame["Close"].iloc[0] == "101.00"  # as in the file


def test_parse_json_list_with_tickers_and_aliases():
    rows = [
        {
            "Symbol": "brk-b",
            "Date": "2024-06-06",
            "Open": 1,
            "High": 2,
            "Low": 0.5,
            "Close": 1.5,
            "Volume": 10,
            "Stock Splits": 0,
            "Dividends": 0.1,
        },
    ]
    dropped = parse_drop("landing/x.json", json.dumps(rows).encode(), today=TODAY)
    assert dropped.tickers == ("BRK-B",)
    assert {"Dividends", "Stock Splits"} <= set(dropped.frame.columns)


@pytest.mark.parametrize(
    ("key", "content", "reason"),
    [
        ("landing/notes.txt", "hello", "unsupported file type"),
        ("landing/my prices.csv", yahoo_csv(), "file name is not a ticker"),
        ("landing/AAPL.csv", "Date,Open,High\n2024-06-03,1,2\n", r"missing column\(s\) Low, Close"),
        ("landing/AAPL.csv", yahoo_csv(days=["06/03/2024"]), "is not YYYY-MM-DD"),
        ("landing/AAPL.csv", yahoo_csv(days=["2024-06-10"]), "dated after today"),
        ("landing/AAPL.json", "{not json", "not a readable JSON"),
        ("landing/AAPL.json", '{"bars": 3}', "expected a list of bar objects"),
        ("landing/x.csv", yahoo_csv(ticker_column="NOT A TICKER"), "invalid ticker"),
        ("landing/AAPL.csv", "Date,Open,High,Low,Close,Volume\n", "no rows"),
    ],
)
def test_parse_rejects_with_a_reason(key, content, reason):
    with pytest.raises(DropRejected, match=reason):
        parse_drop(key, content.encode(), today=TODAY)


# -- the sensor ----------------------------------------------------------------------------------
@pytest.fixture
def instance():
    with deployment_event_log_instance() as instance:
        yield instance


@pytest.fixture
def friday(settings):
    return at(dataclasses.replace(settings, tickers="AAPL,KO"), et(2024, 6, 7, 18, 0))


def drop(settings, name: str, text: str) -> None:
    path = settings.home / "landing" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def files_under(settings, prefix: str) -> list[str]:
    root = settings.home / "landing" / prefix
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_drops_are_landed_as_source_file_and_flow_downstream(friday, instance):
    materialize(friday, select=DAILY, partition_range=(WEEK[0], WEEK[-1]))
    drop(friday, "MSFT.csv", yahoo_csv())
    drop(friday, "vendor/nvda.json", json_bars("NVDA", days=WEEK[2:]))
    drop(friday, "mixed.csv", yahoo_csv(days=WEEK[3:], ticker_column="TSLA", base=200))
    drop(friday, "broken.csv", 'this,is\nnot"a,yahoo,file\n')
    drop(friday, "readme.txt", "not data")
    drop(friday, ".MSFT.csv.part", "being written")  # ignored until renamed

    first = tick_sensor(friday, SENSOR, instance)
    (request,) = first.run_requests
    assert request.tags[AUTOMATION_TAG] == "file_drop"
    assert request.tags[TICKERS_TAG] == "MSFT,NVDA,TSLA"
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == (WEEK[0], WEEK[-1])
    batch = request.tags[FILE_BATCH_TAG]
    assert request.run_config == {"ops": {"raw__daily_bars": {"config": {"file_batch": batch}}}}
    assert {k.to_user_string() for k in target_keys(friday, SENSOR)} >= {
        "raw/daily_bars",
        "silver/daily_bars",
        "gold/daily_features",
    }

    # Unreadable files are set aside with the reason; the others were claimed for the run.
    rejected = files_under(friday, "rejected")
    assert any(r.endswith("/broken.csv") for r in rejected)
    reason = next(p for p in (friday.home / "landing" / "rejected").rglob("broken.csv.reason.txt"))
    assert "broken.csv" in reason.read_text()
    assert any(r.endswith("/readme.txt.reason.txt") for r in rejected)
    claimed = files_under(friday, f"claimed/{batch}")
    assert claimed == ["MSFT.csv", "_batch.json", "mixed.csv", "vendor/nvda.json"]
    assert files_under(friday, "").count(".MSFT.csv.part") == 1

    # Idempotent: the next ticks request nothing new.
    second = tick_sensor(friday, SENSOR, instance, first.cursor)
    assert not second.run_requests and "no new file" in second.skip_message

    # The run lands the files in raw as source 'file' and builds bronze -> silver for them.
    result = execute_request(
        friday, SENSOR, request, without_dbt(friday, request.asset_selection), instance
    )
    assert result.success
    manifests = RawLake(LocalObjectStore(friday.lake_root)).manifests("file", "daily_bars")
    assert len(manifests) == 3
    assert all(m.source == "file" for m in manifests)
    bronze = query(
        friday,
        "SELECT ticker, source, count(*) AS n FROM bronze.daily_bars GROUP BY 1, 2 ORDER BY 1",
    )
    counts = {(r.ticker, r.source): r.n for r in bronze.itertuples()}
    assert counts[("MSFT", "file")] == 5
    assert counts[("NVDA", "file")] == 3
    assert counts[("TSLA", "file")] == 2
    assert counts[("AAPL", "simulator")] == 5  # other tickers untouched
    silver = query(friday, "SELECT DISTINCT source FROM silver.daily_bars WHERE ticker = 'MSFT'")
    assert list(silver["source"]) == ["file"]
    close = query(
        friday,
        "SELECT close FROM silver.daily_bars WHERE ticker = 'MSFT' AND session_date = DATE '2024-06-03'",
    )["close"].iloc[0]
    assert close == pytest.approx(101.0)

    # After the run succeeded, the batch is archived.
    third = tick_sensor(friday, SENSOR, instance, second.cursor)
    assert not third.run_requests and "archived" in third.skip_message
    assert files_under(friday, f"processed/{batch}") == claimed
    assert files_under(friday, "claimed") == []
    assert batch not in json.loads(third.cursor)["requested"]


def test_a_claimed_batch_whose_request_was_lost_is_requested_again(friday, instance):
    drop(friday, "MSFT.csv", yahoo_csv())
    first = tick_sensor(friday, SENSOR, instance)
    (request,) = first.run_requests
    # The daemon died before keeping the cursor: the batch is claimed, no run exists.
    recovered = tick_sensor(friday, SENSOR, instance, cursor=None)
    assert [r.run_key for r in recovered.run_requests] == [request.run_key]


def test_drops_in_the_s3_lake(friday, instance, monkeypatch):
    """landing/ under the lake's S3 prefix, through the same ObjectStore code."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        for name, value in {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(name, value)
        client = boto3.client("s3")
        client.create_bucket(Bucket="drops")
        client.put_object(Bucket="drops", Key="mf/landing/KO.csv", Body=yahoo_csv().encode())
        client.put_object(Bucket="drops", Key="mf/landing/bad.csv", Body=b"nope")
        s3 = dataclasses.replace(friday, s3_bucket="drops", s3_prefix="mf")
        data = tick_sensor(s3, SENSOR, instance)
        (request,) = data.run_requests
        assert request.tags[TICKERS_TAG] == "KO"
        keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket="drops")["Contents"])
        batch = request.tags[FILE_BATCH_TAG]
        assert f"mf/landing/claimed/{batch}/KO.csv" in keys
        assert any(
            k.startswith("mf/landing/rejected/") and k.endswith("bad.csv.reason.txt") for k in keys
        )
        assert "mf/landing/KO.csv" not in keys
    finally:
        server.stop()


def test_readable_files_wait_for_daily_runs_in_progress(friday, instance):
    drop(friday, "MSFT.csv", yahoo_csv())
    drop(friday, "broken.csv", "nope")
    busy = add_run(instance, {}, asset_selection=[dg.AssetKey(["raw", "daily_bars"])])
    waiting = tick_sensor(friday, SENSOR, instance)
    assert not waiting.run_requests and busy in waiting.skip_message
    assert "MSFT.csv" in files_under(friday, "")
    assert any(r.endswith("broken.csv") for r in files_under(friday, "rejected"))  # not held up
    instance.delete_run(busy)
    (request,) = tick_sensor(friday, SENSOR, instance, waiting.cursor).run_requests
    assert request.tags[TICKERS_TAG] == "MSFT"
