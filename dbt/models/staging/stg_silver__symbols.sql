-- Reference data per ticker; `sector` is NULL for indices and funds. `mic`, `currency` and
-- `price_unit` say where and in what a ticker trades (marketflow_assets/exchanges.py).
select
    ticker,
    name,
    quote_type,
    sector,
    industry,
    in_universe,
    mic,
    currency,
    price_unit
from {{ source('silver', 'symbols') }}
