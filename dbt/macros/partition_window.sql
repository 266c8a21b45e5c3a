{#-
    The run's scope, as Dagster passes it in vars (see dbt_project.yml):
      start_date, end_date   first and last NYSE session of the partition window (ISO dates)
      tickers                tickers the run is restricted to, or null for all

    Incremental models read their window (plus any lookback they need) and write exactly the
    rows of their window and scope: `incremental_predicates` name those rows and the
    `replace_where` strategy replaces them (macros/replace_where.sql).
-#}

{% macro _window_date(name) -%}
    {%- set value = var(name) -%}
    {%- if value is none or value | string | trim == '' -%}
        {{ return(none) }}
    {%- endif -%}
    {%- if not modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}', value | string) -%}
        {{ exceptions.raise_compiler_error("var " ~ name ~ "=" ~ value ~ " is not an ISO date (YYYY-MM-DD)") }}
    {%- endif -%}
    {{ return("date '" ~ value ~ "'") }}
{%- endmacro %}


{#- True when the run has a partition window (false: a hand-run build over all history). -#}
{% macro has_partition_window() -%}
    {%- set start, end = _window_date('start_date'), _window_date('end_date') -%}
    {%- if (start is none) != (end is none) -%}
        {{ exceptions.raise_compiler_error("pass both start_date and end_date, or neither") }}
    {%- endif -%}
    {{ return(start is not none) }}
{%- endmacro %}


{#-
    SQL predicate: `column` lies in the partition window, widened by `lookback` (an interval
    such as '14 days' or '1 month') before its start. With `grain` ('month', ...) the window is
    widened to whole periods: `date_trunc(grain, column)` between the periods of its first and
    last session. Without a window: `true`.
-#}
{% macro in_partition_window(column, grain=none, lookback=none) -%}
    {%- if not has_partition_window() -%}
        {{ return('true') }}
    {%- endif -%}
    {%- set start, end = _window_date('start_date'), _window_date('end_date') -%}
    {%- set value = column -%}
    {%- if grain is not none -%}
        {%- set start = "date_trunc('" ~ grain ~ "', " ~ start ~ ")" -%}
        {%- set end = "date_trunc('" ~ grain ~ "', " ~ end ~ ")" -%}
        {%- set value = "date_trunc('" ~ grain ~ "', " ~ column ~ ")" -%}
    {%- endif -%}
    {%- if lookback is not none -%}
        {%- set start = "(" ~ start ~ " - interval '" ~ lookback ~ "')::date" -%}
    {%- endif -%}
    {{ return(value ~ " between " ~ start ~ " and " ~ end) }}
{%- endmacro %}


{#- SQL predicate: `column` is one of the run's tickers (`true` when the run has no ticker scope). -#}
{% macro in_ticker_scope(column) -%}
    {%- set tickers = var('tickers') -%}
    {%- if tickers is none or tickers | length == 0 -%}
        {{ return('true') }}
    {%- endif -%}
    {%- if tickers is string -%}
        {%- set tickers = tickers.split(',') -%}
    {%- endif -%}
    {%- set quoted = [] -%}
    {%- for ticker in tickers -%}
        {#- Yahoo symbols (DESIGN.md); Dagster validates them too, this keeps the SQL literal safe. -#}
        {%- if not modules.re.fullmatch('[A-Za-z0-9^.=-]{1,32}', ticker | string) -%}
            {{ exceptions.raise_compiler_error("var tickers: " ~ ticker ~ " is not a ticker symbol") }}
        {%- endif -%}
        {%- do quoted.append("'" ~ ticker ~ "'") -%}
    {%- endfor -%}
    {{ return(column ~ " in (" ~ quoted | join(", ") ~ ")") }}
{%- endmacro %}
