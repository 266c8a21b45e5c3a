"""The fundamentals provider as a Dagster resource (MARKETFLOW_FUNDAMENTALS_SOURCE).

`yfinance`, `simulator` and `csv` follow MARKETFLOW_SOURCE by default; `edgar` (SEC EDGAR XBRL
company facts, US filers) needs MARKETFLOW_EDGAR_USER_AGENT, a name and e-mail address as the SEC
asks of every client. Requests are retried like price requests (`call_with_retries` here, per
ticker inside the yfinance and EDGAR adapters).
"""

import datetime as dt
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from marketflow_assets.resources import MarketDataResource
from marketflow_assets.sources.base import Payload
from marketflow_assets.sources.fundamentals import FundamentalsSource
from marketflow_assets.sources.retry import call_with_retries

FUNDAMENTALS_SOURCES = ("yfinance", "simulator", "csv", "edgar")


class FundamentalsResource(dg.ConfigurableResource):
    """Where financial statements come from."""

    source: str = "yfinance"
    edgar_user_agent: str | None = None
    edgar_base_url: str = "https://data.sec.gov"
    edgar_tickers_url: str = "https://www.sec.gov/files/company_tickers.json"
    market_data: MarketDataResource

    _source: FundamentalsSource | None = PrivateAttr(default=None)

    def get_source(self) -> FundamentalsSource:
        if self._source is None:
            self._source = self._build()
        return self._source

    def _build(self) -> FundamentalsSource:
        if self.source == "simulator":
            from marketflow_assets.sources.simulator import SimulatorSource
            from marketflow_assets.sources.simulator_fundamentals import SimulatorFundamentals

            prices = self.market_data.get_source()
            if not isinstance(prices, SimulatorSource):  # statements from the simulator alone
                from marketflow_assets.sources.simulator import SimulatorFaults

                md = self.market_data
                clock = dt.datetime.fromisoformat(md.simulator_now) if md.simulator_now else None
                prices = SimulatorSource(
                    seed=md.simulator_seed,
                    clock=clock,
                    faults=SimulatorFaults.parse(md.simulator_faults),
                )
            return SimulatorFundamentals(prices)
        if self.source == "csv":
            from marketflow_assets.sources.fundamentals_csv import CsvFundamentals

            if not self.market_data.csv_dir:
                raise dg.Failure("the csv fundamentals source needs MARKETFLOW_CSV_DIR")
            return CsvFundamentals(Path(self.market_data.csv_dir) / "fundamentals")
        if self.source == "yfinance":
            from marketflow_assets.sources.fundamentals_yahoo import YFinanceFundamentals

            md = self.market_data
            return YFinanceFundamentals(
                backoff=md.backoff, cache_dir=Path(md.cache_dir) if md.cache_dir else None
            )
        if self.source == "edgar":
            from marketflow_assets.sources.fundamentals_edgar import EdgarSource

            if not self.edgar_user_agent:
                raise dg.Failure(
                    "SEC EDGAR asks every client to name itself: set MARKETFLOW_EDGAR_USER_AGENT "
                    "to e.g. 'Jane Doe jane@example.com'",
                    allow_retries=False,
                )
            return EdgarSource(
                user_agent=self.edgar_user_agent,
                base_url=self.edgar_base_url,
                tickers_url=self.edgar_tickers_url,
                backoff=self.market_data.backoff,
            )
        raise dg.Failure(f"unknown fundamentals source {self.source!r}", allow_retries=False)

    @property
    def name(self) -> str:
        return self.source

    def fetch_statements(self, tickers: tuple[str, ...]) -> Payload:
        source = self.get_source()
        return call_with_retries(
            lambda: source.fetch_statements(tickers),
            what=f"{source.name} statements ({len(tickers)} tickers)",
            backoff=self.market_data.backoff,
        )
