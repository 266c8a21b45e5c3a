"""Dagster resources: the market-data source, the universe, the raw lake, the warehouse, plus
alert delivery (`alerting.py`), check thresholds (`quality.py`) and fundamentals (`fundamentals.py`).

`build_resources(settings)` wires them from `Settings` (the environment), so `definitions.py`,
the demo, tests and the benchmark all build the same graph against different places.
"""

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from marketflow_assets.exchanges import listing_of
from marketflow_assets.resources.alerting import AlertingResource
from marketflow_assets.resources.quality import QualityResource
from marketflow_assets.settings import Settings
from marketflow_assets.sources.base import BarsQuery, MarketDataSource, Payload
from marketflow_assets.sources.retry import Backoff, call_with_retries
from marketflow_assets.storage.lake import LakeResource
from marketflow_assets.storage.raw_io_manager import RawLakeIOManager
from marketflow_assets.storage.warehouse import WarehouseIOManager, WarehouseResource
from marketflow_assets.tickers import InvalidTickerError, load_universe, validate_tickers

WAREHOUSE_POOL = "duckdb_warehouse"
# Warehouse steps retry briefly on transient errors, e.g. another process holding the DuckDB file
# longer than the connection's own backoff (DuckDBResource, ~100 s). Permanent problems raise
# dg.Failure(allow_retries=False) (bad payloads, missing upstream tables) and fail at once.
WAREHOUSE_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
TICKERS_TAG = "marketflow/tickers"


class MarketDataResource(dg.ConfigurableResource):
    """The provider: `yfinance`, `simulator` or `csv` (MARKETFLOW_SOURCE)."""

    source: str = "yfinance"
    csv_dir: str | None = None
    simulator_seed: int = 0
    simulator_now: str | None = None  # ISO timestamp; None = real time
    simulator_faults: str = ""
    cache_dir: str | None = None  # yfinance's timezone/cookie caches
    retry_attempts: int = 5
    retry_base_seconds: float = 1.0

    _source: MarketDataSource | None = PrivateAttr(default=None)

    @property
    def backoff(self) -> Backoff:
        return Backoff(
            attempts=self.retry_attempts,
            base_seconds=self.retry_base_seconds,
            rate_limit_floor_seconds=5 * self.retry_base_seconds,
        )

    def get_source(self) -> MarketDataSource:
        if self._source is None:
            self._source = self._build()
        return self._source

    def _build(self) -> MarketDataSource:
        if self.source == "simulator":
            from marketflow_assets.sources.simulator import SimulatorFaults, SimulatorSource

            clock = dt.datetime.fromisoformat(self.simulator_now) if self.simulator_now else None
            return SimulatorSource(
                seed=self.simulator_seed,
                clock=clock.astimezone(dt.UTC) if clock else None,
                faults=SimulatorFaults.parse(self.simulator_faults),
            )
        if self.source == "csv":
            from marketflow_assets.sources.csv_files import CsvSource

            if not self.csv_dir:
                raise dg.Failure("the csv source needs MARKETFLOW_CSV_DIR")
            return CsvSource(Path(self.csv_dir))
        if self.source == "yfinance":
            from marketflow_assets.sources.yahoo import YFinanceSource

            return YFinanceSource(
                backoff=self.backoff, cache_dir=Path(self.cache_dir) if self.cache_dir else None
            )
        raise dg.Failure(f"unknown source {self.source!r}")

    def fetch_bars(self, query: BarsQuery) -> Payload:
        """One provider request (retried on rate limits and transient errors)."""
        source = self.get_source()
        return call_with_retries(
            lambda: source.fetch_bars(query),
            what=f"{source.name} {query.interval} bars {query.start}..{query.end} ({len(query.tickers)} tickers)",
            backoff=self.backoff,
        )

    def fetch_profiles(self, tickers: tuple[str, ...]) -> Payload:
        source = self.get_source()
        return call_with_retries(
            lambda: source.fetch_profiles(tickers),
            what=f"{source.name} profiles ({len(tickers)} tickers)",
            backoff=self.backoff,
        )


class UniverseResource(dg.ConfigurableResource):
    """The tickers to maintain (MARKETFLOW_TICKERS: a comma list, `@file`, or the built-in file)."""

    tickers: str | None = None

    def symbols(self) -> list[str]:
        try:
            tickers = load_universe(self.tickers)
            for ticker in tickers:  # each needs a known exchange (its sessions and hours)
                listing_of(ticker)
        except InvalidTickerError as exc:  # incl. exchanges.UnknownExchangeError
            raise dg.Failure(str(exc), allow_retries=False) from exc
        return tickers


def ticker_scope(context: Any) -> tuple[str, ...] | None:
    """Tickers a run is restricted to (run tag `marketflow/tickers`), or None for all.

    A run-wide tag rather than per-asset config: sensors and users restrict every layer of a
    run at once (e.g. re-adjust one ticker's history after a split) with a single setting."""
    raw = context.run.tags.get(TICKERS_TAG) if context.run else None
    if not raw:
        return None
    try:
        return tuple(validate_tickers(raw.split(","), origin=f"run tag {TICKERS_TAG}"))
    except InvalidTickerError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc


def build_resources(settings: Settings) -> dict[str, Any]:
    warehouse = WarehouseResource(
        database=str(settings.warehouse),
        lock_timeout_seconds=settings.warehouse_lock_timeout_seconds,
    )
    lake = build_lake(settings)
    market_data = MarketDataResource(
        source=settings.source,
        csv_dir=str(settings.csv_dir) if settings.csv_dir else None,
        simulator_seed=settings.simulator_seed,
        simulator_now=settings.simulator_now.isoformat() if settings.simulator_now else None,
        simulator_faults=settings.simulator_faults,
        cache_dir=str(settings.home / "yfinance-cache"),
        retry_base_seconds=settings.retry_base_seconds,
    )
    return {
        "market_data": market_data,
        "universe": UniverseResource(tickers=settings.tickers),
        "lake": lake,
        "warehouse": warehouse,
        "quality": QualityResource(freshness_delay_minutes=settings.freshness_delay_minutes),
        "alerting": build_alerting(settings),
        "raw_io_manager": RawLakeIOManager(lake=lake, source=settings.source),
        "warehouse_io_manager": WarehouseIOManager(warehouse=warehouse),
        "io_manager": WarehouseIOManager(warehouse=warehouse),
    }


def build_lake(settings: Settings) -> LakeResource:
    """The local lake, or the S3 one when a bucket is set (dagster-aws imported only then)."""
    if settings.s3_bucket is None:
        return LakeResource(local_root=str(settings.lake_root))
    from dagster_aws.s3 import S3Resource

    from marketflow_assets.storage.s3_lake import S3LakeResource

    return S3LakeResource(
        local_root=str(settings.lake_root),
        s3_bucket=settings.s3_bucket,
        s3_prefix=settings.s3_prefix,
        s3=S3Resource(),
    )


def build_alerting(settings: Settings) -> AlertingResource:
    """Alert channels from the environment. Secrets go in as dg.EnvVar (resolved when the
    resource is used), so their values never sit in Settings, the UI or run config."""
    login = settings.smtp_login_configured
    return AlertingResource(
        slack_webhook_url=(
            dg.EnvVar("MARKETFLOW_SLACK_WEBHOOK_URL") if settings.slack_webhook_configured else None
        ),
        email_to=settings.alert_email_to,
        smtp_host=settings.smtp_host,
        smtp_port=settings.smtp_port,
        smtp_user=dg.EnvVar("MARKETFLOW_SMTP_USER") if login else None,
        smtp_password=dg.EnvVar("MARKETFLOW_SMTP_PASSWORD") if login else None,
        smtp_from=settings.smtp_from,
        smtp_tls=settings.smtp_tls,
        outbox_dir=str(settings.home / "alerts" / "outbox"),
    )
