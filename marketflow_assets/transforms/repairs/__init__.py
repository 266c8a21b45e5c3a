"""Known provider errors, repaired in silver with provenance or quarantined with a reason.

Every repair kind has a switch (on by default, `RepairSwitches`); switching one off gives the
provider's raw behaviour for that kind. Original values always stay in raw and bronze; silver rows
carry `repair_reason`, `silver.bar_repairs` lists every repaired bar (before and after) and
`silver.corporate_actions` keeps the original amount of every corrected dividend.

    range_widened         open/close slightly outside [low, high] (opening-auction prints):
                          the range is widened to include them (bars.py)
    unit_100x             a row or block quoted in the currency instead of its 1/100 unit (GBP vs
                          GBp, ZAR vs ZAc) or the reverse: rescaled by 100 (bars.py)
    split_unapplied       rows before a split not adjusted for it, or adjusted twice: rescaled
                          by the split ratio, volume by its inverse (bars.py)
    dividend_unit         a dividend 100x too large or too small (dividends.py)
    dividend_duplicate    a phantom copy of a dividend a few days from the real one (dividends.py)
    dividend_date         a dividend dated a session early: no drop on its date, its drop at the
                          next session's open: moved there, amount kept (dividends.py)
    dividend_unpriced     a dividend on a date the provider gives no prices for: nothing confirms
                          it, so it is kept with its amount but not applied (dividends.py)
    adj_close_recomputed  the provider's Adj Close disagrees with the adjustment silver computes
                          from the (repaired) actions: missing dividend adjustment, capital gains
                          double counted, adjustment 100x too small (silver uses its own)
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from marketflow_assets.contracts.silver import REPAIR_KINDS

DIVIDEND_REPAIR_KINDS = (
    "dividend_unit",
    "dividend_duplicate",
    "dividend_date",
    "dividend_unpriced",
)
# Bars silver cannot repair with unambiguous evidence land in silver.rejected_bars with this reason.
QUARANTINE_REASONS = ("unexplained_price_spike",)


@dataclass(frozen=True)
class RepairSwitches:
    range_widened: bool = True
    unit_100x: bool = True
    split_unapplied: bool = True
    adj_close_recomputed: bool = True
    dividend_unit: bool = True
    dividend_duplicate: bool = True
    dividend_date: bool = True
    dividend_unpriced: bool = True

    @classmethod
    def from_disabled(cls, disabled: str | tuple[str, ...] | list[str]) -> RepairSwitches:
        names = [n.strip() for n in disabled.split(",")] if isinstance(disabled, str) else disabled
        names = [n for n in names if n]
        unknown = sorted(set(names) - set(REPAIR_KINDS))
        if unknown:
            raise ValueError(f"unknown repair kind(s) {unknown}; known: {', '.join(REPAIR_KINDS)}")
        return cls(**{f.name: f.name not in names for f in fields(cls)})
