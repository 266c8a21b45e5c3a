-- Regular hours of each ticker's own exchange per session (silver.session_hours), UTC.
select
    ticker,
    session_date,
    mic,
    timezone,
    open_utc,
    close_utc,
    break_start_utc,
    break_end_utc
from {{ source('silver', 'session_hours') }}
