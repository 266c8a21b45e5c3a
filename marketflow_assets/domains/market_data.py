"""Market data: prices from the provider (or dropped files) through raw, bronze, silver, gold."""

import dagster as dg

from marketflow_assets.assets import bronze, gold, gold_intraday, raw, silver
from marketflow_assets.automation import (
    catch_up,
    close,
    corporate_actions,
    file_drops,
    intraday,
    universe,
)
from marketflow_assets.checks import anomalies, repairs
from marketflow_assets.checks import intraday as intraday_checks
from marketflow_assets.checks import silver as silver_checks
from marketflow_assets.domains import Deployment, domain_definitions

SILVER_DAILY = dg.AssetKey(["silver", "daily_bars"])


def definitions(deployment: Deployment) -> dg.Definitions:
    settings = deployment.settings
    return domain_definitions(
        deployment,
        assets=dg.load_assets_from_modules([raw, bronze, silver, gold, gold_intraday]),
        table_checks={
            SILVER_DAILY: (
                silver_checks.ohlc_consistency_check(),
                silver_checks.reconciliation_check(),
                silver_checks.completeness_check(),
                anomalies.price_jump_check(),
                anomalies.volume_spike_check(),
                *repairs.bar_repair_checks(),
            ),
            dg.AssetKey(["silver", "corporate_actions"]): repairs.dividend_repair_checks(),
            dg.AssetKey(["silver", "intraday_bars_1m"]): intraday_checks.intraday_checks(),
        },
        raw_suites=(
            dg.AssetKey(["raw", "daily_bars"]),
            dg.AssetKey(["raw", "intraday_bars_1m"]),
            dg.AssetKey(["raw", "company_profiles"]),
        ),
        freshness=(SILVER_DAILY,),
        schedules=[close.daily_close_schedule],
        sensors=[
            catch_up.build_catch_up_sensor(settings.catch_up_lookback_sessions),
            intraday.build_intraday_sensor(settings.intraday_poll_minutes),
            universe.universe_sensor,
            corporate_actions.corporate_actions_sensor,
            file_drops.file_drops_sensor,
        ],
    )
