-- Adjusted daily bars: the price basis every mart computes returns from.
select
    ticker,
    session_date,
    adj_open,
    adj_high,
    adj_low,
    adj_close,
    adj_volume,
    source
from {{ source('silver', 'daily_bars') }}
