-- One-minute bars inside regular hours, traded basis (silver.intraday_bars_1m).
select
    ticker,
    session_date,
    ts,
    open,
    high,
    low,
    close,
    volume
from {{ source('silver', 'intraday_bars_1m') }}
