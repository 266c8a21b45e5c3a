"""Failing-row samples as Markdown, for check metadata (whole-run and per-session alike)."""

import pandas as pd


def _readable(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for name in out.columns:
        column = out[name]
        naive = pd.api.types.is_datetime64_any_dtype(column) and not isinstance(
            column.dtype, pd.DatetimeTZDtype
        )
        if naive and (column.dropna() == column.dropna().dt.normalize()).all():
            out[name] = column.dt.date  # dates print as dates, not midnights
    return out


def sample_markdown(sample: pd.DataFrame | None) -> str:
    if sample is None or sample.empty:
        return "_no failing rows_"
    return _readable(sample).to_markdown(index=False, floatfmt=".6g")
