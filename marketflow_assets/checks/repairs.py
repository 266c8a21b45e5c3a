"""One WARN check per repair kind, so what silver repaired in a run shows in the UI.

Bar repairs (silver.bar_repairs) are checked on silver/daily_bars over the run's sessions;
dividend repairs (silver.corporate_actions.repair_reason) on silver/corporate_actions. A check
passes when nothing of its kind was repaired and warns, listing the rows, when something was:
the data is served repaired, but a human should know (and can switch the kind off to compare).
"""

from __future__ import annotations

import dagster as dg

from marketflow_assets.checks.framework import WARN, CheckDef, CheckRun, Outcome
from marketflow_assets.contracts.silver import REPAIR_KINDS

BAR_REPAIRS = dg.AssetKey(["silver", "bar_repairs"])
DIVIDEND_KINDS = ("dividend_unit", "dividend_duplicate", "dividend_date", "dividend_unpriced")
BAR_KINDS = tuple(k for k in REPAIR_KINDS if k not in DIVIDEND_KINDS)


def bar_repair_check(kind: str) -> CheckDef:
    def evaluate(run: CheckRun) -> Outcome:
        where, params = "TRUE", []
        if run.scope.partitioned:
            where, params = "session_date BETWEEN ? AND ?", [run.scope.start, run.scope.end]
        return run.failures(
            f"""
            SELECT ticker, session_date, kind, factor, detail, original_close, close
            FROM silver.bar_repairs
            WHERE {where} AND list_contains(string_split(kind, ','), '{kind}')
            """,
            params,
            ok=f"no bar needed a {kind} repair",
            failed=f"{{n}} bar(s) of {{tickers}} ticker(s) repaired ({kind}); see silver.bar_repairs",
        )

    return CheckDef(
        name=f"repairs_{kind}",
        description=(
            f"WARN when silver repaired bars ({kind}) in the checked sessions: lists them with "
            "the factor and the values before and after (silver.bar_repairs)."
        ),
        evaluate=evaluate,
        severity=WARN,
        additional_deps=(BAR_REPAIRS,),
    )


def dividend_repair_check(kind: str) -> CheckDef:
    def evaluate(run: CheckRun) -> Outcome:
        return run.failures(
            f"""
            SELECT ticker, ex_date, original_dividend, dividend, repair_detail
            FROM silver.corporate_actions WHERE repair_reason = '{kind}'
            """,
            ok=f"no dividend needed a {kind} repair",
            failed=f"{{n}} dividend(s) of {{tickers}} ticker(s) corrected ({kind})",
            session="ex_date",
        )

    return CheckDef(
        name=f"repairs_{kind}",
        description=(
            f"WARN when silver corrected dividends ({kind}): lists them with the provider's "
            "amount, the corrected one and the evidence."
        ),
        evaluate=evaluate,
        severity=WARN,
    )


def bar_repair_checks() -> tuple[CheckDef, ...]:
    return tuple(bar_repair_check(k) for k in BAR_KINDS)


def dividend_repair_checks() -> tuple[CheckDef, ...]:
    return tuple(dividend_repair_check(k) for k in DIVIDEND_KINDS)
