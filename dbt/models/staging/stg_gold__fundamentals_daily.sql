-- Point-in-time fundamentals (gold.fundamentals_daily), the columns the marts use.
select
    ticker,
    session_date,
    market_cap,
    pe_ttm,
    pb,
    ps_ttm,
    ev_ebitda_ttm,
    gross_margin_ttm,
    operating_margin_ttm,
    net_margin_ttm,
    roe_ttm,
    dividend_yield_ttm
from {{ source('gold', 'fundamentals_daily') }}
