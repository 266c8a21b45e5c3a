-- Reference data per ticker; `sector` is NULL for indices and funds.
select
    ticker,
    name,
    quote_type,
    sector,
    industry,
    in_universe
from {{ source('silver', 'symbols') }}
