"""Operations: alerts on failed runs and failed checks (ops.alert_history, Slack, email)."""

import dagster as dg

from marketflow_assets.automation import alerts
from marketflow_assets.domains import Deployment, domain_definitions


def definitions(deployment: Deployment) -> dg.Definitions:
    return domain_definitions(
        deployment,
        assets=[],
        sensors=[alerts.run_failure_alerts, alerts.check_failure_alerts],
    )
