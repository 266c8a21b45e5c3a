{#-
    Market breadth per sector, exchange and session, equal-weighted over the sector's equities
    listed on that exchange. Like with like: a row never mixes exchanges (sessions, holidays) or
    currencies; Tokyo's Technology and New York's Technology are two rows. Money amounts are in
    the exchange's currency (`currency`), pence converted to pounds. A sector row aggregates
    every ticker of the sector, so a ticker-scoped run still recomputes whole sector rows of its
    window (from all tickers' current features) rather than narrowing them.
-#}
{{ config(
    incremental_predicates=[in_partition_window('session_date')],
) }}

select
    sector::varchar as sector,
    mic::varchar as mic,
    currency::varchar as currency,
    session_date::date as session_date,
    count(*)::bigint as tickers,
    avg(return_1d)::double as avg_return_1d,
    -- count(*) filter, not count_if: count_if over only NULLs (a ticker's first session) is NULL.
    (count(*) filter (where return_1d > 0))::bigint as advancers,
    (count(*) filter (where return_1d < 0))::bigint as decliners,
    ((count(*) filter (where adj_close > sma_200)) / nullif(count(sma_200), 0))::double
        as share_above_sma_200,
    avg(rsi_14)::double as avg_rsi_14,
    sum(dollar_volume * to_currency)::double as total_dollar_volume
from {{ ref('int_daily_features__sectors') }}
{% if is_incremental() -%}
where {{ in_partition_window('session_date') }}
{%- endif %}
group by sector, mic, currency, session_date
