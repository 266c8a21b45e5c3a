{#-
    The run's scope reaches the SQL as three DuckDB macros (see macros/partition_window.sql),
    defined by the first hook of every invocation (`on-run-start`) and dropped by the last
    (`on-run-end`). Where the scope comes from, first match wins:
      1. vars `start_date`, `end_date` (ISO dates) and `tickers` (a list or a comma string): a
         hand-run `dbt build --vars ...`;
      2. the environment variable MARKETFLOW_DBT_RUN_SCOPE, JSON {"start_date", "end_date",
         "tickers"}: what Dagster sets for the dbt process of a run
         (marketflow_assets/assets/dbt.py);
      3. neither: no window and all tickers, so the incremental models rebuild all the history.
    The vars and the environment are read only while executing (never while parsing), so they
    never invalidate dbt's partial-parse state. Only one process writes the warehouse at a time
    (DuckDB's file lock; Dagster's warehouse lock around the whole build), and each invocation
    defines its own scope before its first model, so a run never sees another run's scope.
-#}

{% macro _iso_date_literal(name, value) -%}
    {%- if value is none or value | string | trim == '' -%}
        {{ return('null::date') }}
    {%- endif -%}
    {%- if not modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}', value | string) -%}
        {{ exceptions.raise_compiler_error("run scope: " ~ name ~ "=" ~ value ~ " is not an ISO date (YYYY-MM-DD)") }}
    {%- endif -%}
    {{ return("date '" ~ value ~ "'") }}
{%- endmacro %}


{% macro _tickers_literal(tickers) -%}
    {%- if tickers is none or tickers | length == 0 -%}
        {{ return('null::varchar[]') }}
    {%- endif -%}
    {%- if tickers is string -%}
        {%- set tickers = tickers.split(',') -%}
    {%- endif -%}
    {%- set quoted = [] -%}
    {%- for ticker in tickers -%}
        {#- Yahoo symbols (DESIGN.md); Dagster validates them too, this keeps the SQL literal safe. -#}
        {%- if not modules.re.fullmatch('[A-Za-z0-9^.=-]{1,32}', ticker | string) -%}
            {{ exceptions.raise_compiler_error("run scope: tickers: " ~ ticker ~ " is not a ticker symbol") }}
        {%- endif -%}
        {%- do quoted.append("'" ~ ticker ~ "'") -%}
    {%- endfor -%}
    {{ return("[" ~ quoted | join(", ") ~ "]::varchar[]") }}
{%- endmacro %}


{#- The scope as a dict {start_date, end_date, tickers}: vars, else the environment, else empty. -#}
{% macro _run_scope() -%}
    {%- set from_vars = {
        'start_date': var('start_date', none),
        'end_date': var('end_date', none),
        'tickers': var('tickers', none),
    } -%}
    {%- if from_vars.values() | select | list | length > 0 -%}
        {{ return(from_vars) }}
    {%- endif -%}
    {%- set raw = env_var('MARKETFLOW_DBT_RUN_SCOPE', '') -%}
    {%- if raw | trim == '' -%}
        {{ return({}) }}
    {%- endif -%}
    {{ return(fromjson(raw)) }}
{%- endmacro %}


{#- on-run-start: define the run's scope (nothing while parsing). -#}
{% macro define_run_scope() -%}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}
    {%- set scope = _run_scope() -%}
    {%- set start = _iso_date_literal('start_date', scope.get('start_date')) -%}
    {%- set end = _iso_date_literal('end_date', scope.get('end_date')) -%}
    {%- if (start == 'null::date') != (end == 'null::date') -%}
        {{ exceptions.raise_compiler_error("run scope: pass both start_date and end_date, or neither") }}
    {%- endif -%}
    create or replace macro marketflow_window_start() as {{ start }};
    create or replace macro marketflow_window_end() as {{ end }};
    create or replace macro marketflow_run_tickers() as {{ _tickers_literal(scope.get('tickers')) }};
{%- endmacro %}


{#- on-run-end: leave nothing behind in the warehouse. -#}
{% macro drop_run_scope() -%}
    {%- if not execute -%}
        {{ return('') }}
    {%- endif -%}
    drop macro if exists marketflow_window_start;
    drop macro if exists marketflow_window_end;
    drop macro if exists marketflow_run_tickers;
{%- endmacro %}
