-- Daily features of equities with their sector and listing (exchange MIC and ISO currency).
-- Indices and funds (NULL sector) and tickers without reference data are left out: they belong
-- to no sector. `to_currency` turns a quoted amount into the listing's currency: 1/100 where
-- Yahoo quotes a 1/100 subunit (GBp, ZAc, ILA: price_unit differs from currency), else 1.
select
    symbols.sector,
    coalesce(symbols.mic, 'unknown') as mic,
    coalesce(symbols.currency, symbols.price_unit) as currency,
    case
        when symbols.price_unit is distinct from symbols.currency then 0.01 else 1.0
    end as to_currency,
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
