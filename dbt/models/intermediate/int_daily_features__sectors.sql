-- Daily features of equities with their sector. Indices and funds (NULL sector) and tickers
-- without reference data are left out: they belong to no sector.
select
    symbols.sector,
    features.ticker,
    features.session_date,
    features.adj_close,
    features.return_1d,
    features.sma_200,
    features.rsi_14,
    features.dollar_volume
from {{ ref('stg_gold__daily_features') }} as features
inner join {{ ref('stg_silver__symbols') }} as symbols
    on symbols.ticker = features.ticker
where symbols.sector is not null
