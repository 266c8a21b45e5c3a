"""Dropped statement files: financial statements in the documented long format, picked up from
the landing prefix like dropped bars (`landing.py`: same claim, reject and archive steps;
`landing.parse_drop` tells the two apart and checks a statements file's rows).

A dropped `.csv`/`.json` is a statements file when its columns include `statement` and
`line_item`; the format is the csv source's (`sources/fundamentals.py`): `statement,
period_type, period_end, line_item, value[, currency, reported_at]`, plus a `ticker` column,
or `{"ticker": ..., "rows": [...]}` in JSON, or a `<TICKER>.csv` name. Every row is checked at
pick-up with the bronze rules (`long_rows_problem`): a bad row rejects the whole file with its
name, line and field. Accepted files become their own batch; its run lands them in raw as
source `file` (raw/file/financial_statements, one manifest per file, a `marketflow-statements/1`
document per ticker) and rebuilds bronze and silver, where `reported_at` becomes known_at.
Gold sessions the new facts concern are rebuilt by `late_fact_rebuilds`.
"""

import datetime as dt

import dagster as dg

from marketflow_assets.calendar import EXCHANGE_TZ
from marketflow_assets.ingestion.landing import (
    KIND,
    claimed_drops,
    drops_landing,
    landing_store,
)
from marketflow_assets.sources.base import TICKER_COLUMN
from marketflow_assets.sources.fundamentals import (
    DATASET,
    LONG_COLUMNS,
    LONG_FORMAT,
    statements_payload,
)
from marketflow_assets.storage.lake import LakeResource
from marketflow_assets.storage.raw_io_manager import FILE_DROP_SOURCE, Landing, RawLanding


def land_dropped_statements(
    context: dg.AssetExecutionContext, batch: str, now: dt.datetime, lake: LakeResource
) -> RawLanding:
    """Land a claimed batch of statement files in raw as source `file` (raw/financial_statements,
    run config `file_batch`): one landing per file, a long-format document per ticker."""
    store = landing_store(lake)
    today = now.astimezone(EXCHANGE_TZ).date()
    landings, described = [], []
    for dropped in claimed_drops(store, batch, now, kind=KIND):
        key = dropped.key
        rows = dropped.frame.replace({"": None})
        records = {
            ticker: {
                "format": LONG_FORMAT,
                "file": store.uri(key),
                "rows": part[list(LONG_COLUMNS)].to_dict("records"),
            }
            for ticker, part in rows.groupby(TICKER_COLUMN)
        }
        request = {"file": store.uri(key), "sha256": dropped.sha256, "batch": batch}
        payload = statements_payload(
            FILE_DROP_SOURCE, {**request, "tickers": list(dropped.tickers)}, now, records, {}, 0
        )
        landings.append(Landing(payload, partition=today.isoformat()))
        described.append(
            {"file": store.uri(key), "tickers": list(dropped.tickers), "rows": len(rows)}
        )
        context.log.info(f"{key}: {len(rows)} statement row(s) of {', '.join(dropped.tickers)}")
    return drops_landing(DATASET, batch, landings, described)
