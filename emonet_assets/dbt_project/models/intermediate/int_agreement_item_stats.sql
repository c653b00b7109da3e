-- Per-item sufficient statistics of every pairable (image, emotion): alpha and its bootstrap need only these.
-- A view with the string ids joined back, for the Parquet export the fairness report reads.
{{ config(materialized='view') }}
select
    i.collection,
    {{ scale_name('c.scale_key') }} as scale,
    e.emotion_id,
    i.image_id,
    c.m,
    c.s1,
    c.s2,
    {% for v in range(8) -%}
    c.c{{ v }}{{ "," if not loop.last }}
    {% endfor %}
from {{ ref('int_item_value_counts') }} as c
inner join {{ ref('stg_images') }} as i using (image_key)
inner join {{ ref('stg_emotions') }} as e using (emotion_key)
where c.m >= 2
