"""Environment configuration (DESIGN.md, "Configuration"): one place that reads MARKETFLOW_*.

Everything is optional; defaults give a local lake and warehouse under `.marketflow/`.
Invalid values fail at load time with a message naming the variable.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SOURCES = ("yfinance", "simulator", "csv")


class ConfigError(ValueError):
    """A MARKETFLOW_* setting is invalid; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    home: Path = Path(".marketflow")
    source: str = "yfinance"
    csv_dir: Path | None = None
    tickers: str | None = None
    start_date: dt.date = dt.date(2010, 1, 4)
    warehouse_path: Path | None = None
    s3_bucket: str | None = None
    s3_prefix: str = "marketflow"
    simulator_seed: int = 0
    simulator_now: dt.datetime | None = None
    simulator_faults: str = ""
    retry_base_seconds: float = 1.0
    intraday_poll_minutes: int = 5
    freshness_delay_minutes: int = 180
    # Automation and alerting (marketflow_assets/automation). Secrets (the Slack webhook URL, the
    # SMTP login) are never read here: only whether they are set; resources read them through
    # dg.EnvVar, so their values stay out of Settings, logs and the UI.
    catch_up_lookback_sessions: int = 30
    alert_email_to: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_from: str | None = None
    smtp_tls: str = "starttls"
    slack_webhook_configured: bool = False
    smtp_login_configured: bool = False
    # The HTTP API (`make serve`); its keys (MARKETFLOW_API_KEYS) are read by the API, not here.
    api_host: str = "127.0.0.1"
    api_port: int = 8000

    @property
    def lake_root(self) -> Path:
        return self.home / "lake"

    @property
    def warehouse(self) -> Path:
        return self.warehouse_path or self.home / "warehouse.duckdb"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(name)
            return value.strip() if value and value.strip() else None

        source = (get("MARKETFLOW_SOURCE") or "yfinance").lower()
        if source not in SOURCES:
            raise ConfigError(f"MARKETFLOW_SOURCE={source!r} is not one of {', '.join(SOURCES)}")
        csv_dir = get("MARKETFLOW_CSV_DIR")
        if source == "csv" and not csv_dir:
            raise ConfigError(
                "MARKETFLOW_SOURCE=csv needs MARKETFLOW_CSV_DIR (a folder of <TICKER>.csv)"
            )

        return cls(
            home=Path(get("MARKETFLOW_HOME") or ".marketflow").expanduser(),
            source=source,
            csv_dir=Path(csv_dir).expanduser() if csv_dir else None,
            tickers=get("MARKETFLOW_TICKERS"),
            start_date=_parse_date("MARKETFLOW_START_DATE", get("MARKETFLOW_START_DATE"))
            or dt.date(2010, 1, 4),
            warehouse_path=Path(w).expanduser() if (w := get("MARKETFLOW_WAREHOUSE")) else None,
            s3_bucket=get("MARKETFLOW_S3_BUCKET"),
            s3_prefix=(get("MARKETFLOW_S3_PREFIX") or "marketflow").strip("/"),
            simulator_seed=_parse_int(
                "MARKETFLOW_SIMULATOR_SEED", get("MARKETFLOW_SIMULATOR_SEED"), 0
            ),
            simulator_now=_parse_timestamp(
                "MARKETFLOW_SIMULATOR_NOW", get("MARKETFLOW_SIMULATOR_NOW")
            ),
            simulator_faults=get("MARKETFLOW_SIMULATOR_FAULTS") or "",
            retry_base_seconds=_parse_float(
                "MARKETFLOW_RETRY_BASE_SECONDS", get("MARKETFLOW_RETRY_BASE_SECONDS"), 1.0
            ),
            intraday_poll_minutes=_parse_int(
                "MARKETFLOW_INTRADAY_POLL_MINUTES", get("MARKETFLOW_INTRADAY_POLL_MINUTES"), 5
            ),
            freshness_delay_minutes=_parse_int(
                "MARKETFLOW_FRESHNESS_DELAY_MINUTES", get("MARKETFLOW_FRESHNESS_DELAY_MINUTES"), 180
            ),
            **_automation_settings(get),
            api_host=get("MARKETFLOW_API_HOST") or "127.0.0.1",
            api_port=_parse_int("MARKETFLOW_API_PORT", get("MARKETFLOW_API_PORT"), 8000),
        )


SMTP_TLS_MODES = ("starttls", "ssl", "none")


def _automation_settings(get) -> dict:
    """MARKETFLOW_CATCH_UP_LOOKBACK_SESSIONS, MARKETFLOW_ALERT_EMAIL_TO, MARKETFLOW_SMTP_* and
    whether MARKETFLOW_SLACK_WEBHOOK_URL / MARKETFLOW_SMTP_USER are set (not their values)."""
    lookback = _parse_int(
        "MARKETFLOW_CATCH_UP_LOOKBACK_SESSIONS", get("MARKETFLOW_CATCH_UP_LOOKBACK_SESSIONS"), 30
    )
    if lookback < 1:
        raise ConfigError(f"MARKETFLOW_CATCH_UP_LOOKBACK_SESSIONS={lookback} must be at least 1")
    tls = (get("MARKETFLOW_SMTP_TLS") or "starttls").lower()
    if tls not in SMTP_TLS_MODES:
        raise ConfigError(f"MARKETFLOW_SMTP_TLS={tls!r} is not one of {', '.join(SMTP_TLS_MODES)}")
    user, password = get("MARKETFLOW_SMTP_USER"), get("MARKETFLOW_SMTP_PASSWORD")
    if (user is None) != (password is None):
        raise ConfigError("MARKETFLOW_SMTP_USER and MARKETFLOW_SMTP_PASSWORD go together")
    email_to = get("MARKETFLOW_ALERT_EMAIL_TO")
    smtp_host = get("MARKETFLOW_SMTP_HOST")
    if email_to and not smtp_host:
        raise ConfigError("MARKETFLOW_ALERT_EMAIL_TO needs MARKETFLOW_SMTP_HOST (the mail server)")
    return {
        "catch_up_lookback_sessions": lookback,
        "alert_email_to": email_to,
        "smtp_host": smtp_host,
        "smtp_port": _parse_int("MARKETFLOW_SMTP_PORT", get("MARKETFLOW_SMTP_PORT"), 587),
        "smtp_from": get("MARKETFLOW_SMTP_FROM"),
        "smtp_tls": tls,
        "slack_webhook_configured": get("MARKETFLOW_SLACK_WEBHOOK_URL") is not None,
        "smtp_login_configured": user is not None,
    }


def _parse_date(name: str, value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"{name}={value!r} is not an ISO date (YYYY-MM-DD)") from exc


def _parse_int(name: str, value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ConfigError(f"{name}={value!r} is not an integer") from exc


def _parse_float(name: str, value: str | None, default: float) -> float:
    if value is None:
        return default
    try:
        parsed = float(value)
    except ValueError as exc:
        raise ConfigError(f"{name}={value!r} is not a number") from exc
    if parsed < 0:
        raise ConfigError(f"{name}={value!r} must not be negative")
    return parsed


def _parse_timestamp(name: str, value: str | None) -> dt.datetime | None:
    """ISO timestamp; a naive one is read as UTC. Returned timezone-aware (UTC)."""
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"{name}={value!r} is not an ISO timestamp") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)
