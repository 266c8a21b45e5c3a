-- Distance between the 50- and 200-session SMAs per ticker and session. NULL while either
-- average is warming up (the first 199 sessions of a ticker).
select
    ticker,
    session_date,
    sma_50,
    sma_200,
    sma_50 - sma_200 as ma_spread
from {{ ref('stg_gold__daily_features') }}
