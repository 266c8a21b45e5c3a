{#-
    Valuation and profitability per sector and session: medians over the sector's equities of
    their point-in-time ratios (gold.fundamentals_daily), so one extreme ticker does not move
    the sector. Medians skip NULL ratios (P/E of loss makers, P/B of negative equity). Like
    sector_daily, one row per sector and exchange (`mic`, with its `currency`): market caps of
    different currencies are never summed together, and a ticker-scoped run recomputes whole
    sector rows of its window.
-#}
{{ config(
    incremental_predicates=[in_partition_window('session_date')],
) }}

select
    symbols.sector::varchar as sector,
    coalesce(symbols.mic, 'unknown')::varchar as mic,
    coalesce(symbols.currency, symbols.price_unit)::varchar as currency,
    f.session_date::date as session_date,
    count(*)::bigint as tickers,
    -- in the listing's currency: pence (GBp) and other 1/100 subunits / 100
    sum(
        f.market_cap
        * case when symbols.price_unit is distinct from symbols.currency then 0.01 else 1.0 end
    )::double as total_market_cap,
    median(f.pe_ttm)::double as median_pe_ttm,
    (count(*) filter (where f.pe_ttm is null))::bigint as tickers_without_pe,
    median(f.pb)::double as median_pb,
    median(f.ps_ttm)::double as median_ps_ttm,
    median(f.ev_ebitda_ttm)::double as median_ev_ebitda_ttm,
    median(f.gross_margin_ttm)::double as median_gross_margin_ttm,
    median(f.operating_margin_ttm)::double as median_operating_margin_ttm,
    median(f.net_margin_ttm)::double as median_net_margin_ttm,
    median(f.roe_ttm)::double as median_roe_ttm,
    median(f.dividend_yield_ttm)::double as median_dividend_yield_ttm
from {{ ref('stg_gold__fundamentals_daily') }} as f
inner join {{ ref('stg_silver__symbols') }} as symbols
    on symbols.ticker = f.ticker
where symbols.sector is not null
{%- if is_incremental() %}
    and {{ in_partition_window('f.session_date') }}
{%- endif %}
group by all
