"""Financial statements from files: `<MARKETFLOW_CSV_DIR>/fundamentals/<TICKER>.csv` (or `.json`),
in the documented long format (`sources/fundamentals.py`). Each file becomes a
`marketflow-statements/1` document, cells as text; a file that lacks the format's columns raises
`PayloadFormatError` naming the file, and a bad cell fails bronze naming the ticker, fetch and
row. The file's modification time stands in for the fetch time, as for price CSVs.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd

from marketflow_assets.sources.base import Payload, PayloadFormatError
from marketflow_assets.sources.fundamentals import (
    LONG_COLUMNS,
    LONG_FORMAT,
    FundamentalsSource,
    statements_payload,
)

REQUIRED = ("statement", "period_type", "period_end", "line_item", "value")


class CsvFundamentals(FundamentalsSource):
    name = "csv"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def unavailable(self) -> str | None:
        if not self.directory.is_dir():
            return f"no statements folder {self.directory} (see the documented CSV format)"
        return None

    def fetch_statements(self, tickers: tuple[str, ...]) -> Payload:
        records, errors = {}, {}
        for ticker in tickers:
            csv_path, json_path = (self.directory / f"{ticker}.{ext}" for ext in ("csv", "json"))
            if csv_path.exists():
                records[ticker] = read_statements_file(csv_path)
            elif json_path.exists():
                records[ticker] = read_statements_file(json_path)
            else:
                errors[ticker] = f"no {csv_path.name} or {json_path.name} in {self.directory}"
        return statements_payload(
            self.name, {"tickers": list(tickers), "directory": str(self.directory)}, self.now(),
            records, errors, 0,
        )  # fmt: skip


def read_statements_file(path: Path) -> dict:
    """A statements file as a `marketflow-statements/1` document (cells as text)."""
    try:
        if path.suffix == ".json":
            rows = pd.DataFrame(json.loads(path.read_text()), dtype=str)
        else:
            rows = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, OSError) as exc:
        raise PayloadFormatError(f"{path}: not a statements file: {exc}") from exc
    missing = [c for c in REQUIRED if c not in rows.columns]
    if missing:
        raise PayloadFormatError(
            f"{path}: missing column(s) {missing}; expected {', '.join(LONG_COLUMNS)}"
        )
    rows = rows.reindex(columns=list(LONG_COLUMNS)).replace({"": None})
    return {"format": LONG_FORMAT, "file": path.name, "rows": rows.to_dict("records")}
