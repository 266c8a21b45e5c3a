-- One row per ticker and calendar month with data: its sessions and its last adjusted close.
select
    ticker,
    date_trunc('month', session_date)::date as month_start,
    min(session_date) as first_session_date,
    max(session_date) as last_session_date,
    count(*) as sessions,
    arg_max(adj_close, session_date) as adj_close
from {{ ref('stg_silver__daily_bars') }}
group by ticker, date_trunc('month', session_date)
