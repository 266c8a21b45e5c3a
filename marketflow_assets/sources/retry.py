"""Retries with exponential backoff and full jitter for provider calls.

Only `TransientProviderError` (rate limits, network errors) is retried; anything else is a
real answer and propagates at once. `sleep` and `rng` are injectable so tests run instantly and
deterministically.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from marketflow_assets.sources.base import RateLimitError, TransientProviderError

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    attempts: int = 5
    base_seconds: float = 1.0
    max_seconds: float = 60.0
    rate_limit_floor_seconds: float = 5.0  # a 429 never retries sooner than this

    def delay(self, attempt: int, error: Exception, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**attempt)], floored for 429s."""
        ceiling = min(self.max_seconds, self.base_seconds * 2**attempt)
        delay = rng.uniform(0, ceiling)
        if isinstance(error, RateLimitError):
            delay = max(delay, min(self.rate_limit_floor_seconds, self.max_seconds))
        return delay


def call_with_retries(
    call: Callable[[], T],
    *,
    what: str,
    backoff: Backoff = Backoff(),
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """Run `call`, retrying transient provider errors; the last error propagates."""
    rng = rng or random.Random()
    for attempt in range(backoff.attempts):
        try:
            return call()
        except TransientProviderError as error:
            if attempt == backoff.attempts - 1:
                raise
            delay = backoff.delay(attempt, error, rng)
            log.warning(
                "%s failed (%s: %s); retry %d/%d in %.1fs",
                what,
                type(error).__name__,
                error,
                attempt + 1,
                backoff.attempts - 1,
                delay,
            )
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
