{#-
    A row-level invariant, e.g. an ordering between columns (`bb_lower_20 <= bb_middle_20`).
    Rows where the expression is false fail; rows where it is NULL (warm-up indicators) pass.
-#}
{% test expression_is_true(model, expression) %}
    select *
    from {{ model }}
    where not ({{ expression }})
{% endtest %}
