"""SEC EDGAR XBRL company facts (`edgar-companyfacts` documents), for US filers.

`https://data.sec.gov/api/xbrl/companyfacts/CIK##########.json` holds every value a company has
reported in XBRL since 2009, each with its period (`start`/`end`), `form`, fiscal period and the
`filed` date of the report: the real filing date becomes `known_at`, and a value reported again
differently (an amendment, a restated comparative) is a new version. Tickers are mapped to CIKs
with the SEC's `company_tickers.json`.

The SEC's fair-access rules: every request names its user in `User-Agent` (configuration:
MARKETFLOW_EDGAR_USER_AGENT), at most 10 requests a second (`min_interval_seconds`). Failures
follow the price adapters: 429 and network errors / 5xx are retried with backoff per ticker, an
unknown ticker or CIK (404) is named in `errors` and not retried, and after a ticker keeps
failing transiently the rest of the request is reported as not attempted.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from marketflow_assets.sources.base import (
    Payload,
    ProviderError,
    RateLimitError,
    TransientProviderError,
    UnknownTickerError,
)
from marketflow_assets.sources.fundamentals import FundamentalsSource, statements_payload
from marketflow_assets.sources.retry import Backoff, call_with_retries

SOURCE_NAME = "edgar"
TIMEOUT_SECONDS = 30
DEFAULT_BACKOFF = Backoff()


class EdgarSource(FundamentalsSource):
    name = SOURCE_NAME

    def __init__(
        self,
        *,
        user_agent: str,
        base_url: str = "https://data.sec.gov",
        tickers_url: str = "https://www.sec.gov/files/company_tickers.json",
        backoff: Backoff = DEFAULT_BACKOFF,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        min_interval_seconds: float = 0.1,
    ) -> None:
        if not user_agent or "@" not in user_agent:
            raise ValueError(
                f"EDGAR User-Agent {user_agent!r} must name you and give an e-mail address "
                "(e.g. 'Jane Doe jane@example.com'), as the SEC asks"
            )
        self.user_agent = user_agent
        self.base_url = base_url.rstrip("/")
        self.tickers_url = tickers_url
        self._backoff, self._sleep, self._rng = backoff, sleep, rng or random.Random()
        self._min_interval = min_interval_seconds
        self._last_request = 0.0
        self._ciks: dict[str, int] | None = None
        self.calls = 0

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def fetch_statements(self, tickers: tuple[str, ...]) -> Payload:
        fetched_at = self.now()
        self.calls = 0
        records: dict[str, Any] = {}
        errors: dict[str, str] = {}
        try:
            ciks = self._with_retries(self._cik_map, "EDGAR company_tickers.json")
        except ProviderError as error:
            return self._payload(tickers, fetched_at, {}, dict.fromkeys(tickers, str(error)))
        for position, ticker in enumerate(tickers):
            cik = ciks.get(ticker.upper().replace("-", "."), ciks.get(ticker.upper()))
            if cik is None:
                errors[ticker] = f"{ticker} has no CIK in the SEC's company_tickers.json"
                continue
            url = f"{self.base_url}/api/xbrl/companyfacts/CIK{cik:010d}.json"
            try:
                records[ticker] = self._with_retries(lambda u=url: self._get_json(u), ticker)
            except TransientProviderError as error:
                errors[ticker] = str(error)
                skipped = f"not attempted: stopped after {ticker} failed ({error})"
                errors.update(dict.fromkeys(tickers[position + 1 :], skipped))
                break
            except ProviderError as error:
                errors[ticker] = str(error)
        return self._payload(tickers, fetched_at, records, errors)

    def _payload(self, tickers, fetched_at, records, errors) -> Payload:
        request = {
            "tickers": list(tickers),
            "provider_call": "EDGAR /api/xbrl/companyfacts/CIK##########.json",
            "base_url": self.base_url,
        }
        return statements_payload(self.name, request, fetched_at, records, errors, self.calls)

    def _cik_map(self) -> dict[str, int]:
        if self._ciks is None:
            table = self._get_json(self.tickers_url)
            self._ciks = {row["ticker"].upper(): int(row["cik_str"]) for row in table.values()}
        return self._ciks

    def _with_retries(self, call: Callable[[], Any], what: str) -> Any:
        return call_with_retries(
            call, what=f"EDGAR {what}", backoff=self._backoff, sleep=self._sleep, rng=self._rng
        )

    def _get_json(self, url: str) -> Any:
        wait = self._last_request + self._min_interval - time.monotonic()
        if wait > 0:
            self._sleep(wait)
        self._last_request = time.monotonic()
        self.calls += 1
        request = urllib.request.Request(
            url, headers={"User-Agent": self.user_agent, "Accept-Encoding": "gzip"}
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                body = response.read()
                if response.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
        except urllib.error.HTTPError as error:
            reason = f"HTTP {error.code} from {url}"
            if error.code == 429:
                raise RateLimitError(reason) from error
            if error.code == 404:
                raise UnknownTickerError(reason) from error
            if error.code >= 500:
                raise TransientProviderError(reason) from error
            raise ProviderError(reason) from error
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            raise TransientProviderError(f"{type(error).__name__}: {error} ({url})") from error
        try:
            return json.loads(body)
        except json.JSONDecodeError as error:  # an error page instead of JSON
            raise TransientProviderError(f"not JSON from {url}: {body[:80]!r}") from error
