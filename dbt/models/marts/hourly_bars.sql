{#-
    Hourly OHLCV aligned to the session, not to the clock: hour 0 is 09:30-10:30 New York, the
    last hour is cut at the close (15:30-16:00, or 12:30-13:00 on an early close). Bars are
    built from the one-minute bars of each hour; an incremental run rebuilds its window's
    sessions (every hour of a session lies in that session, so no lookback is needed).
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
        *,
        -- Minutes since 09:30 in exchange time: daylight saving never shifts the buckets.
        date_diff(
            'minute',
            session_date + interval '9 hours 30 minutes',
            timezone('America/New_York', ts)
        ) as minute_of_session
    from {{ ref('stg_silver__intraday_bars_1m') }}
    {% if is_incremental() -%}
    where {{ in_partition_window('session_date') }}
      and {{ in_ticker_scope('ticker') }}
    {%- endif %}

)

select
    ticker::varchar as ticker,
    session_date::date as session_date,
    (minute_of_session // 60)::integer as hour_of_session,
    timezone(
        'America/New_York',
        session_date + interval '9 hours 30 minutes' + to_hours((minute_of_session // 60)::integer)
    )::timestamptz as hour_start,
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
