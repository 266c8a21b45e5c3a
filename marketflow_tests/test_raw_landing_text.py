"""The raw landing's text, built faster, is the text it was: partition keys formatted once per
distinct date (`iso_dates`) equal pandas' `strftime`, NaT included, and a manifest's JSON equals
the `dataclasses.asdict` rendering it replaced."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pandas as pd

from marketflow_assets.storage.raw_lake import MANIFEST_VERSION, FetchManifest, RawObject
from marketflow_assets.transforms.payloads import iso_dates


def test_iso_dates_equal_strftime_with_gaps_and_repeats():
    values = pd.Series(
        pd.to_datetime(["2024-06-07", None, "2015-01-02", "2024-06-07", None, "1999-12-31"]),
        index=[10, 11, 12, 13, 14, 15],
        name="session",
    )
    assert iso_dates(values).equals(values.dt.strftime("%Y-%m-%d"))
    empty = pd.Series([], dtype="datetime64[ns]")
    assert iso_dates(empty).equals(empty.dt.strftime("%Y-%m-%d").astype(object))


def test_manifest_json_is_the_asdict_rendering():
    now = dt.datetime(2024, 6, 7, 22, tzinfo=dt.UTC)
    objects = tuple(
        RawObject(
            f"raw/s/d/date=2024-06-0{i}/f.parquet",
            f"2024-06-0{i}",
            3,
            10,
            "ab",
            {"Open": "double"},
            {"A": "t"} if i % 2 else {},
        )
        for i in range(1, 4)
    )
    manifest = FetchManifest(
        "f",
        "s",
        "d",
        None,
        now,
        now,
        {"landed": {"first": "x"}},
        {"A": {"status": "ok", "rows": 3}},
        objects,
        ({"ticker": "A", "dividend": None},),
    )
    body = dataclasses.asdict(manifest)
    body.update(
        manifest_version=MANIFEST_VERSION, fetched_at=now.isoformat(), landed_at=now.isoformat()
    )
    assert manifest.to_json() == json.dumps(body, indent=1, sort_keys=True, default=str)
    assert FetchManifest.from_json(manifest.to_json()) == manifest
