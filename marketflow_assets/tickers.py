"""Ticker symbols and the universe.

Symbols are Yahoo symbols (`AAPL`, `BRK-B`, `^GSPC`, `EURUSD=X`, `0700.HK`). They end up in
object keys, file names and SQL literals, so anything outside that grammar is rejected here,
once, before it reaches a provider or a path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

# Optional leading caret (indices), alphanumeric groups joined by single '.', '-' or '='.
_SYMBOL = re.compile(r"^\^?[A-Z0-9]+(?:[.\-=][A-Z0-9]+)*$")
MAX_SYMBOL_LENGTH = 20
DEFAULT_UNIVERSE_RESOURCE = "default_universe.txt"


class InvalidTickerError(ValueError):
    """A symbol that is not a valid Yahoo symbol; the message names it and where it came from."""


def _shown(raw: str, limit: int = 40) -> str:
    """The symbol as written (repr shows invisible and look-alike characters), cut if long."""
    return repr(raw) if len(raw) <= limit else f"{raw[:limit]!r}... ({len(raw)} characters)"


def validate_ticker(raw: str, *, origin: str = "ticker") -> str:
    """Normalise (strip, upper-case) and validate one symbol, or raise naming it. The ASCII
    check comes before upper-casing: `str.upper` maps dotless i (U+0131) to `I` and sharp s to
    `SS`, and look-alike letters (Cyrillic, fullwidth) are not ASCII either."""
    stripped = raw.strip()
    symbol = stripped.upper() if stripped.isascii() else ""
    if not symbol or len(symbol) > MAX_SYMBOL_LENGTH or not _SYMBOL.match(symbol):
        raise InvalidTickerError(
            f"invalid ticker {_shown(raw)} in {origin}: expected a Yahoo symbol such as AAPL, BRK-B, "
            f"^GSPC or EURUSD=X (letters, digits and ^ . - =, at most {MAX_SYMBOL_LENGTH} characters)"
        )
    return symbol


def validate_tickers(raw: Iterable[str], *, origin: str = "tickers") -> list[str]:
    """Validate many symbols; keeps first-seen order and drops repeats."""
    seen: dict[str, None] = {}
    for item in raw:
        seen.setdefault(validate_ticker(item, origin=origin), None)
    return list(seen)


def parse_universe_text(text: str, *, origin: str) -> list[str]:
    """A universe file: one symbol per line (commas also separate), '#' starts a comment."""
    symbols: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        symbols.extend(part for part in (p.strip() for p in line.split(",")) if part)
    if not symbols:
        raise InvalidTickerError(f"universe {origin} lists no tickers")
    return validate_tickers(symbols, origin=origin)


def default_universe() -> list[str]:
    text = resources.files("marketflow_assets.data").joinpath(DEFAULT_UNIVERSE_RESOURCE).read_text()
    return parse_universe_text(text, origin=f"built-in {DEFAULT_UNIVERSE_RESOURCE}")


def load_universe(spec: str | None) -> list[str]:
    """Resolve MARKETFLOW_TICKERS: unset -> built-in file; `@path` -> that file; else a comma list."""
    if not spec:
        return default_universe()
    if spec.startswith("@"):
        path = Path(spec[1:]).expanduser()
        if not path.is_file():
            raise InvalidTickerError(
                f"universe file {path} (from MARKETFLOW_TICKERS) does not exist"
            )
        return parse_universe_text(path.read_text(), origin=str(path))
    return parse_universe_text(spec, origin="MARKETFLOW_TICKERS")


def universe_source_path(spec: str | None) -> Path | None:
    """The file a universe comes from, when it comes from a file the automation can watch."""
    if spec and spec.startswith("@"):
        return Path(spec[1:]).expanduser()
    return None
