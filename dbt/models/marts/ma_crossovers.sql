{#-
    Golden and death crosses: the sessions where sma_50 - sma_200 changes sign from the ticker's
    previous session. The spread must end strictly on the new side and have started on or past
    the old one, so a touch (- 0 +) is one cross, on the session it turns positive, as in
    `marketflow_assets.transforms.indicators.ma_crossovers`. An incremental run reads
    `crossover_max_gap_days` of lookback, so the first session of its window is compared with the
    session before it, and replaces only the crossovers of its window (and of its tickers, in a
    ticker-scoped run).
-#}
{{ config(
    incremental_predicates=[
        in_partition_window('session_date'),
        in_ticker_scope('ticker'),
    ],
) }}

{%- set max_gap_days = var('crossover_max_gap_days') | int %}

with spreads as (

    select *
    from {{ ref('int_daily_features__ma_spread') }}
    {% if is_incremental() -%}
    where {{ in_partition_window('session_date', lookback=max_gap_days ~ ' days') }}
      and {{ in_ticker_scope('ticker') }}
    {%- endif %}

),

compared as (

    select
        *,
        lag(session_date) over by_ticker as previous_session_date,
        lag(ma_spread) over by_ticker as previous_ma_spread
    from spreads
    window by_ticker as (partition by ticker order by session_date)

)

select
    ticker::varchar as ticker,
    session_date::date as session_date,
    (case when ma_spread > 0 then 'golden' else 'death' end)::varchar as cross_type,
    sma_50::double as sma_50,
    sma_200::double as sma_200,
    ma_spread::double as ma_spread,
    previous_session_date::date as previous_session_date,
    previous_ma_spread::double as previous_ma_spread
from compared
where (
        (previous_ma_spread <= 0 and ma_spread > 0)
        or (previous_ma_spread >= 0 and ma_spread < 0)
    )
  and date_diff('day', previous_session_date, session_date) <= {{ max_gap_days }}
  {% if is_incremental() -%}
  and {{ in_partition_window('session_date') }}
  {%- endif %}
