"""yfinance's price-repair fixtures through MarketFlow's csv source into silver, compared with
the maintainers' repaired files (issue 15's bar). `make repair-report` prints the table."""
