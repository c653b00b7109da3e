{% test value_in_scale(model, column_name, item_key_column='item_key') %}
select *
from {{ model }}
where {{ column_name }} is null
    or {{ column_name }} < 0
    or {{ column_name }} > case when {{ item_scale_key(item_key_column) }} = {{ scale_key("'binary'") }} then 1 else 7 end
{% endtest %}
