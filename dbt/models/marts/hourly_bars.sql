{#-
    Hourly OHLCV aligned to the session of the ticker's own exchange, not to the clock: hour 0
    starts at that session's regular open (09:30 New York, 08:00 London, 09:00 Tokyo, from
    silver.session_hours, in UTC so daylight saving never shifts the buckets), and the last hour
    is cut at the close (15:30-16:00 New York, or 12:30-13:00 on an early close). A lunch break
    (Tokyo 11:30-12:30, Hong Kong 12:00-13:00) holds no minutes: the hours around it are
    partial (`minutes`). Bars are built from the one-minute bars of each hour; an incremental
    run rebuilds its window's sessions (every hour of a session lies in that session, so no
    lookback is needed).
-#}
{{ config(
    meta={'cadence': 'intraday'},
    incremental_predicates=[
        in_partition_window('session_date'),
        in_ticker_scope('ticker'),
    ],
) }}

with minutes as (

    select
        m.*,
        h.open_utc,
        date_diff('minute', h.open_utc, m.ts) as minute_of_session
    from {{ ref('stg_silver__intraday_bars_1m') }} as m
    inner join {{ ref('stg_silver__session_hours') }} as h
        on h.ticker = m.ticker and h.session_date = m.session_date
    {% if is_incremental() -%}
    where {{ in_partition_window('m.session_date') }}
      and {{ in_ticker_scope('m.ticker') }}
    {%- endif %}

)

select
    ticker::varchar as ticker,
    session_date::date as session_date,
    (minute_of_session // 60)::integer as hour_of_session,
    (any_value(open_utc) + to_hours((minute_of_session // 60)::integer))::timestamptz
        as hour_start,
    (max(ts) + interval '1 minute')::timestamptz as last_minute_end,
    arg_min(open, ts)::double as open,
    max(high)::double as high,
    min(low)::double as low,
    arg_max(close, ts)::double as close,
    sum(volume)::bigint as volume,
    (sum((high + low + close) / 3 * volume) / nullif(sum(volume), 0))::double as vwap,
    count(*)::bigint as minutes
from minutes
group by ticker, session_date, minute_of_session // 60
