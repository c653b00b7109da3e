-- Each rating beside the median of the other annotators on the same item (the basis of the human ceiling), counted
-- per (emotion, annotator, batch, rating, others' median): the others' median comes from the item's value counts
-- less the rating itself, so no rating is joined to its item's other ratings.
{% set others = [] %}
{% for v in range(8) %}{% do others.append('(k' ~ v ~ ' - (r.value <= ' ~ v ~ ')::int)') %}{% endfor %}
with items as (
    select
        item_key,
        m,
        {% for c in cumulative(value_counts()) -%}
        {{ c }} as k{{ loop.index0 }}{{ "," if not loop.last }}
        {% endfor %}
    from {{ ref('int_item_value_counts') }}
    where m >= 2
)

select
    r.collection_key,
    r.scale_key,
    r.emotion_key,
    r.annotator_key,
    r.batch_key,
    r.value,
    {{ twice_median(others, 'i.m - 1') }} as others_median2,
    count(*) as n_ratings,
    min(r.imported_at) as imported_at
from {{ ref('stg_ratings') }} as r
inner join items as i using (item_key)
group by all
