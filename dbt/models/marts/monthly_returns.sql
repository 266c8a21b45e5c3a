{#-
    Compounded return per ticker and calendar month: the month's last adjusted close over the
    previous month's last adjusted close, minus one (the product of the daily returns). The
    current month is month-to-date. An incremental run rewrites the months its window touches
    (each from all its sessions in the warehouse) and reads the month before them as the base.
-#}
{{ config(
    incremental_predicates=[
        in_partition_window('month_start', grain='month'),
        in_ticker_scope('ticker'),
    ],
) }}

with months as (

    select *
    from {{ ref('int_daily_bars__monthly_closes') }}
    {% if is_incremental() -%}
    where {{ in_partition_window('month_start', grain='month', lookback='1 month') }}
      and {{ in_ticker_scope('ticker') }}
    {%- endif %}

),

with_previous as (

    select
        *,
        lag(month_start) over by_ticker as previous_month_start,
        lag(adj_close) over by_ticker as previous_adj_close
    from months
    window by_ticker as (partition by ticker order by month_start)

),

based as (

    select
        *,
        -- Only the calendar month just before is a base: after a month without bars the
        -- return would span several months.
        case
            when previous_month_start = month_start - interval '1 month' then previous_adj_close
        end as base_adj_close
    from with_previous

)

select
    ticker::varchar as ticker,
    month_start::date as month_start,
    first_session_date::date as first_session_date,
    last_session_date::date as last_session_date,
    sessions::bigint as sessions,
    base_adj_close::double as base_adj_close,
    adj_close::double as adj_close,
    (adj_close / base_adj_close - 1)::double as monthly_return,
    -- Guarded so that a bad close reaches the tests (monthly_return > -1) instead of failing
    -- the model: ln() raises on a non-positive ratio.
    (case when adj_close / base_adj_close > 0 then ln(adj_close / base_adj_close) end)::double
        as monthly_log_return
from based
{% if is_incremental() -%}
where {{ in_partition_window('month_start', grain='month') }}
{%- endif %}
