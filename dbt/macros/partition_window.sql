{#-
    The run's scope: the partition window (first and last NYSE session) and the tickers a run is
    restricted to. Incremental models read their window (plus any lookback they need) and write
    exactly the rows of their window and scope: `incremental_predicates` name those rows and the
    `replace_where` strategy replaces them (macros/replace_where.sql).

    The predicates are SQL over three DuckDB macros that the run's first hook defines
    (macros/run_scope.sql): marketflow_window_start(), marketflow_window_end() (NULL: no window,
    all the history) and marketflow_run_tickers() (NULL: all tickers). They are literals, which
    DuckDB folds at bind time, so the plans are those of literal dates. The compiled models do
    not depend on the window, so dbt parses the project once per code change, not once per run
    (vars would invalidate its partial-parse state on every run).
-#}


{#-
    SQL predicate: `column` lies in the partition window, widened by `lookback` (an interval
    such as '14 days' or '1 month') before its start. With `grain` ('month', ...) the window is
    widened to whole periods: `date_trunc(grain, column)` between the periods of its first and
    last session. Without a window: true.
-#}
{% macro in_partition_window(column, grain=none, lookback=none) -%}
    {%- set start, end = "marketflow_window_start()", "marketflow_window_end()" -%}
    {%- set value = column -%}
    {%- if grain is not none -%}
        {%- set start = "date_trunc('" ~ grain ~ "', " ~ start ~ ")" -%}
        {%- set end = "date_trunc('" ~ grain ~ "', " ~ end ~ ")" -%}
        {%- set value = "date_trunc('" ~ grain ~ "', " ~ column ~ ")" -%}
    {%- endif -%}
    {%- if lookback is not none -%}
        {%- set start = "(" ~ start ~ " - interval '" ~ lookback ~ "')::date" -%}
    {%- endif -%}
    {{ return("(marketflow_window_start() is null or " ~ value ~ " between " ~ start ~ " and " ~ end ~ ")") }}
{%- endmacro %}


{#- SQL predicate: `column` is one of the run's tickers (true when the run has no ticker scope). -#}
{% macro in_ticker_scope(column) -%}
    {{ return("(marketflow_run_tickers() is null or list_contains(marketflow_run_tickers(), " ~ column ~ "))") }}
{%- endmacro %}
