"""Bronze reads each statement document once and stores only the documents that say something
new: daily re-fetches of unchanged statements add no numbers, and silver's facts are the same
as from every number of every fetch, including after a document fetched earlier lands late."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pandas as pd
import pytest

from marketflow_assets.assets.fundamentals import statement_documents
from marketflow_assets.sources.fundamentals import DATASET
from marketflow_assets.storage.object_store import LocalObjectStore
from marketflow_assets.storage.raw_lake import RawLake
from marketflow_assets.transforms.fundamentals import statement_rows
from marketflow_assets.transforms.statement_documents import (
    document_ledger,
    mark_stored,
    out_of_order,
)
from marketflow_tests.helpers import make_settings, materialize, query, silver_facts

STATEMENTS = ["raw/financial_statements", "bronze/financial_statements", "silver/financial_facts"]
TICKERS = "KO,CSCO,MSFT"
FAULTS = "restatements=0.5"
F1 = dt.datetime(2024, 3, 1, 22, 0, tzinfo=dt.UTC)
FACT_ORDER = ["ticker", "statement", "period_type", "period_end", "line_item", "version"]


# -- the rules, on small frames ---------------------------------------------------------------
def docs(*rows: tuple[str, str, str, str]) -> pd.DataFrame:
    """(ticker, fetch_id, fetched_at, content_hash) documents."""
    frame = pd.DataFrame(rows, columns=["ticker", "fetch_id", "fetched_at", "content_hash"])
    frame["fetched_at"] = pd.to_datetime(frame["fetched_at"], utc=True)
    return frame


def test_a_document_is_stored_when_it_differs_from_its_tickers_previous_one():
    read = docs(("KO", "f1", "2024-03-01", "a"), ("MSFT", "f1", "2024-03-01", "m"))
    new = docs(
        ("KO", "f3", "2024-03-03", "a"),  # back to what f1 said after f2 changed it
        ("KO", "f2", "2024-03-02", "b"),
        ("MSFT", "f2", "2024-03-02", "m"),  # repeats f1
        ("TSLA", "f2", "2024-03-02", "t"),  # first document of a new ticker
    )
    assert mark_stored(new, read).tolist() == [True, True, False, True]
    assert not out_of_order(new, read)


def test_a_document_fetched_before_one_already_read_is_out_of_order():
    read = docs(("KO", "f2", "2024-03-02", "a"), ("MSFT", "f2", "2024-03-02", "m"))
    new = docs(("KO", "drop", "2024-03-01", "x"), ("MSFT", "f3", "2024-03-03", "m"))
    assert out_of_order(new, read) == {"KO"}


def test_the_hash_ignores_the_order_of_numbers_and_the_fetch():
    rows = pd.DataFrame(
        {
            "ticker": ["KO"] * 2,
            "fetch_id": ["f1"] * 2,
            "statement": ["income", "balance"],
            "period_type": ["annual"] * 2,
            "period_end": pd.to_datetime(["2023-12-31"] * 2),
            "line_item": ["NetIncome", "TotalAssets"],
            "value": [1.0, 2.0],
            "currency": ["USD"] * 2,
            "reported_at": pd.to_datetime([None, None]),
            "reported_via": [None, None],
            "form": [None, None],
            "accession": [None, None],
        }
    )
    other = rows.iloc[::-1].assign(fetch_id="f2")
    changed = other.assign(value=[2.0, 1.5])
    documents = docs(("KO", "f1", "2024-03-01", ""), ("KO", "f2", "2024-03-02", ""))
    documents = documents.drop(columns="content_hash")
    same = document_ledger(documents, pd.concat([rows, other]))
    assert same["content_hash"].nunique() == 1 and same["numbers"].tolist() == [2, 2]
    differs = document_ledger(documents, pd.concat([rows, changed]))
    assert differs["content_hash"].nunique() == 2
    empty = document_ledger(documents, rows.iloc[0:0])
    assert empty["numbers"].tolist() == [0, 0]


# -- end to end on the simulator --------------------------------------------------------------
def silver_from_every_number(settings) -> pd.DataFrame:
    """What silver would hold if bronze stored every number of every landed document."""
    raw = RawLake(LocalObjectStore(settings.home / "lake"))
    rows = statement_rows(statement_documents(raw, raw.manifests(settings.source, DATASET)))
    return normalized(silver_facts(rows))


def normalized(facts: pd.DataFrame) -> pd.DataFrame:
    for column in facts.select_dtypes("datetimetz"):  # "UTC" and "Etc/UTC" are one zone
        facts[column] = facts[column].dt.tz_convert("UTC")
    return facts.sort_values(FACT_ORDER).reset_index(drop=True)


@pytest.mark.slow  # five small runs of the statements path
def test_daily_fetches_store_only_what_changed_and_silver_is_unchanged(tmp_path):
    base = make_settings(
        tmp_path / "home", tickers=TICKERS, simulator_faults=FAULTS, simulator_now=F1
    )

    def run(now: dt.datetime, *, refetch: bool = False, reread: bool = False) -> None:
        settings = dataclasses.replace(base, simulator_now=now)
        ops = {
            "raw__financial_statements": {"config": {"refresh": refetch}},
            "bronze_financial_statements": {"config": {"reread": reread}},
        }
        assert materialize(settings, select=STATEMENTS, run_config={"ops": ops}).success

    def bronze() -> tuple[int, pd.DataFrame]:
        numbers = int(query(base, "SELECT count(*) AS n FROM bronze.financial_statements")["n"][0])
        ledger = query(base, "SELECT * FROM bronze.statement_documents ORDER BY fetched_at, ticker")
        return numbers, ledger

    def silver() -> pd.DataFrame:
        return normalized(query(base, "SELECT * FROM silver.financial_facts"))

    run(F1)
    first_numbers, ledger = bronze()
    assert len(ledger) == 3 and ledger["stored"].all() and first_numbers > 0

    # The next evening's fetch (forced: the refresh policy would ask only tickers due) repeats
    # every document: nothing is stored, all are listed.
    run(F1 + dt.timedelta(days=1), refetch=True)
    numbers, ledger = bronze()
    assert numbers == first_numbers
    assert len(ledger) == 6 and ledger["stored"].sum() == 3
    pd.testing.assert_frame_equal(silver(), silver_from_every_number(base))

    # Three months later: new quarters and restatements, stored for the tickers they concern.
    run(F1 + dt.timedelta(days=98))
    numbers, ledger = bronze()
    assert numbers > first_numbers and ledger["stored"].sum() > 3
    expected = silver_from_every_number(base)
    pd.testing.assert_frame_equal(silver(), expected)
    assert (expected["version"] > 1).any()  # the restatements are versions

    # A fetch with an earlier clock lands late (as a file drop can): its tickers are compared
    # again from their first document; silver still equals silver from every number.
    run(F1 + dt.timedelta(days=30), refetch=True)
    numbers_late, ledger = bronze()
    assert len(ledger) == 12
    pd.testing.assert_frame_equal(silver(), silver_from_every_number(base))

    # Reading everything again gives the same tables.
    before = query(base, "SELECT * FROM bronze.financial_statements ORDER BY ALL")
    run(F1 + dt.timedelta(days=98), reread=True)
    after = query(base, "SELECT * FROM bronze.financial_statements ORDER BY ALL")
    pd.testing.assert_frame_equal(after, before)
    assert bronze()[0] == numbers_late
    pd.testing.assert_frame_equal(silver(), silver_from_every_number(base))
