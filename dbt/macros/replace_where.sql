{#-
    Incremental strategy `replace_where` (as in dbt-databricks): in one transaction, delete the
    target rows that match the model's `incremental_predicates`, then insert the new rows.

    Plain delete+insert deletes only the unique keys present in the new rows, so a row that
    should disappear from the window (a crossover that no longer happens once an upstream bar is
    corrected) would survive. Here the predicates, i.e. the run's partition window and ticker
    scope, decide what is replaced, like the Python assets' warehouse IO manager. A new row
    outside the predicates is a bug in the model and fails the run instead of being written.
-#}
{% macro get_incremental_replace_where_sql(arg_dict) -%}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set source = arg_dict['temp_relation'] -%}
    {%- set predicates = arg_dict['incremental_predicates'] -%}
    {%- if not predicates -%}
        {{ exceptions.raise_compiler_error(
            "incremental_strategy 'replace_where' needs incremental_predicates (" ~ target ~ ")") }}
    {%- endif -%}
    {%- if predicates is string -%}
        {%- set predicates = [predicates] -%}
    {%- endif -%}
    {%- set scope = "(" ~ predicates | join(") and (") ~ ")" -%}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}

    select error('{{ target }}: the model produced rows outside the run''s window/scope: {{ scope | replace("'", "''") }}')
    from {{ source }}
    where ({{ scope }}) is not true
    limit 1;

    delete from {{ target }}
    where {{ scope }};

    insert into {{ target }} ({{ columns }})
    select {{ columns }}
    from {{ source }}
{%- endmacro %}
