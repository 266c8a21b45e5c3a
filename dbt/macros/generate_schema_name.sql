{#-
    Use a model's custom schema verbatim: `+schema: gold` builds `gold.ma_crossovers`, the
    table the asset key ["gold", "ma_crossovers"] names (DESIGN.md: key prefix = layer = DuckDB
    schema). dbt's default would prefix the target schema (`main_gold`).
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
