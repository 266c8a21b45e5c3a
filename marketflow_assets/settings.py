"""Environment configuration (DESIGN.md, "Configuration"): one place that reads MARKETFLOW_*.

Everything is optional; defaults give a local lake and warehouse under `.marketflow/`.
Invalid values fail at load time with a message naming the variable. Under the environment lies
`$MARKETFLOW_HOME/settings.toml` (`marketflow_assets.settings_file`, written by `make demo`):
a non-empty environment variable wins over the file, the file over the defaults.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from marketflow_assets.settings_file import SettingsFileError, read_settings_file, settings_path

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
    # How long a warehouse step waits for another process to release the DuckDB file.
    warehouse_lock_timeout_seconds: float = 600.0
    # Financial statements (marketflow_assets/sources/fundamentals*.py): None = MARKETFLOW_SOURCE.
    fundamentals_source: str | None = None
    edgar_user_agent: str | None = None
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
        env, from_file, file = _with_settings_file(env)
        read: set[str] = set()

        def get(name: str) -> str | None:
            read.add(name)
            value = env.get(name)
            return value.strip() if value and value.strip() else None

        try:
            return _checked_against_file(cls._parse(get), read, from_file, file)
        except ConfigError as exc:
            raise _naming_file(exc, from_file, file) from exc.__cause__

    @classmethod
    def _parse(cls, get) -> Settings:
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
            warehouse_lock_timeout_seconds=_parse_float(
                "MARKETFLOW_WAREHOUSE_LOCK_TIMEOUT_SECONDS",
                get("MARKETFLOW_WAREHOUSE_LOCK_TIMEOUT_SECONDS"),
                600.0,
            ),
            **_fundamentals_settings(get),
            api_host=get("MARKETFLOW_API_HOST") or "127.0.0.1",
            api_port=_parse_int("MARKETFLOW_API_PORT", get("MARKETFLOW_API_PORT"), 8000),
        )


def _with_settings_file(env: Mapping[str, str]) -> tuple[dict[str, str], set[str], Path]:
    """The environment over `$MARKETFLOW_HOME/settings.toml`, the names the file supplied, and
    the file's path. Blank environment values do not hide the file's."""
    file = settings_path(Path(env.get("MARKETFLOW_HOME", "").strip() or ".marketflow").expanduser())
    try:
        in_file = read_settings_file(file)
    except SettingsFileError as exc:
        raise ConfigError(str(exc)) from exc
    overriding = {name: value for name, value in env.items() if value and value.strip()}
    return {**in_file, **overriding}, set(in_file) - set(overriding), file


def _checked_against_file(
    settings: Settings, read: set[str], from_file: set[str], file: Path
) -> Settings:
    if unknown := sorted(from_file - read):
        keys = ", ".join(name.removeprefix("MARKETFLOW_").lower() for name in unknown)
        raise ConfigError(f"{file}: unknown setting(s) {keys}")
    return settings


def _naming_file(exc: ConfigError, from_file: set[str], file: Path) -> ConfigError:
    named = sorted(name for name in from_file if name in str(exc))
    if not named:
        return exc
    return ConfigError(f"{exc} ({', '.join(named)} set in {file})")


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
    if user is not None and tls == "none":
        raise ConfigError(
            "MARKETFLOW_SMTP_USER with MARKETFLOW_SMTP_TLS=none would send the password in "
            "clear: use starttls or ssl, or drop the login"
        )
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


FUNDAMENTALS_SOURCES = ("yfinance", "simulator", "csv", "edgar")


def _fundamentals_settings(get) -> dict:
    """MARKETFLOW_FUNDAMENTALS_SOURCE (default: MARKETFLOW_SOURCE) and
    MARKETFLOW_EDGAR_USER_AGENT (SEC EDGAR asks for a name and e-mail address)."""
    source = get("MARKETFLOW_FUNDAMENTALS_SOURCE")
    source = source.lower() if source else None
    if source is not None and source not in FUNDAMENTALS_SOURCES:
        raise ConfigError(
            f"MARKETFLOW_FUNDAMENTALS_SOURCE={source!r} is not one of "
            f"{', '.join(FUNDAMENTALS_SOURCES)}"
        )
    agent = get("MARKETFLOW_EDGAR_USER_AGENT")
    if source == "edgar" and not agent:
        raise ConfigError(
            "MARKETFLOW_FUNDAMENTALS_SOURCE=edgar needs MARKETFLOW_EDGAR_USER_AGENT "
            "(a name and e-mail address, e.g. 'Jane Doe jane@example.com'), as the SEC asks"
        )
    return {"fundamentals_source": source, "edgar_user_agent": agent}


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
