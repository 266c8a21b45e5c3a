"""Which fetched statement documents bronze stores, and which it has read.

Statements change a few times a year, but they are fetched daily (a daily fetch is what catches
a release or a restatement), so almost every document repeats its ticker's previous one. Bronze
reads each document once (`bronze.statement_documents` lists what it has read) and stores the
numbers of a document only when they differ from the ticker's previous document in fetch order.
A repeated document can be left out without changing silver: its numbers sit, value for value,
right after the same numbers of the document before it in silver's version order (per fact: the
report's own date, then the fetch), so they open no version and are never a version's first
observation. That holds while documents are read in fetch order; a document fetched before one
already read (a late file drop) could sit between two documents bronze treated as neighbours,
so its ticker is read again from all of its documents (`out_of_order`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from marketflow_assets.transforms.fundamentals import STATEMENT_NUMBER_COLUMNS

# What a document says: its numbers and how they are dated, not which fetch brought them.
CONTENT_COLUMNS = STATEMENT_NUMBER_COLUMNS
DOCUMENT = ["ticker", "fetch_id"]
FETCH_ORDER = ["ticker", "fetched_at", "fetch_id"]


def document_ledger(documents: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """One row per document of `documents` (`ticker`, `source`, `fetch_id`, `fetched_at`,
    `raw_object`) with its count of numbers in `rows` (bronze rows) and a hash of them that
    ignores their order: the sum of the rows' hashes (mod 2**64)."""
    hashes = pd.util.hash_pandas_object(rows[list(CONTENT_COLUMNS)], index=False)
    per_row = rows[DOCUMENT].assign(_hash=hashes.to_numpy().view(np.int64))
    per_doc = per_row.groupby(DOCUMENT, sort=False)["_hash"].agg(["size", "sum"])
    ledger = documents.merge(per_doc, left_on=DOCUMENT, right_index=True, how="left")
    ledger["numbers"] = ledger["size"].fillna(0).astype("int64")
    sums = ledger["sum"].fillna(0).astype("int64").to_numpy().view(np.uint64)
    ledger["content_hash"] = [f"{h:016x}" for h in sums]  # one string per document
    return ledger.drop(columns=["size", "sum"])


def out_of_order(new: pd.DataFrame, read: pd.DataFrame) -> set[str]:
    """Tickers with a new document fetched before (`fetched_at`, `fetch_id`) the latest one
    already read: their documents must be compared again from the first."""
    if new.empty or read.empty:
        return set()
    first_new = new.sort_values(FETCH_ORDER).groupby("ticker", sort=False).head(1)
    last_read = read.sort_values(FETCH_ORDER).groupby("ticker", sort=False).tail(1)
    both = first_new.merge(last_read, on="ticker", suffixes=("", "_read"))
    earlier = (both["fetched_at"] < both["fetched_at_read"]) | (
        (both["fetched_at"] == both["fetched_at_read"]) & (both["fetch_id"] < both["fetch_id_read"])
    )
    return set(both.loc[earlier, "ticker"])


def mark_stored(new: pd.DataFrame, read: pd.DataFrame) -> pd.Series:
    """Per document of `new` (in any order), whether bronze stores its numbers: its hash
    differs from the ticker's previous document, the previous new one or else the latest of
    `read` (documents already read, all fetched before the new ones: see `out_of_order`)."""
    ordered = new.sort_values(FETCH_ORDER)
    previous = ordered.groupby("ticker", sort=False)["content_hash"].shift()
    if not read.empty:
        last_read = read.sort_values(FETCH_ORDER).groupby("ticker").tail(1)
        before = ordered["ticker"].map(last_read.set_index("ticker")["content_hash"])
        previous = previous.fillna(before)
    return (ordered["content_hash"] != previous).reindex(new.index)
