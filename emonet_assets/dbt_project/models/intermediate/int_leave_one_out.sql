-- Each rating beside the median of the other annotators on the same item (the basis of the human ceiling), counted
-- per (emotion, annotator, batch, rating, others' median): the others' median comes from the item's value counts
-- less the rating itself, so no rating is joined to its item's other ratings. Each item carries the others' median
-- for each rating 0..7 it could leave out, twice each (0..14, four bits) packed into one 32-bit integer: the join
-- builds on 12 bytes an item instead of its eight counts (19.1 against 15-16 s at a million images).
{% set by_value = [] %}
{% for v in range(8) %}
    {% set others = [] %}
    {% for u in range(8) %}{% do others.append('(k' ~ u ~ ' - ' ~ (1 if v <= u else 0) ~ ')') %}{% endfor %}
    {% do by_value.append('(' ~ twice_median(others, 'm - 1') ~ '::uinteger << ' ~ 4 * v ~ ')') %}
{% endfor %}
with counts as (
    select
        item_key,
        m,
        {% for c in cumulative(value_counts()) -%}
        {{ c }} as k{{ loop.index0 }}{{ "," if not loop.last }}
        {% endfor %}
    from {{ ref('int_item_value_counts') }}
    where m >= 2
),

items as (
    select item_key, {{ by_value | join(' | ') }} as others_median2_by_value
    from counts
)

select
    r.collection_key,
    r.scale_key,
    r.emotion_key,
    r.annotator_key,
    r.batch_key,
    r.value,
    ((i.others_median2_by_value >> (4 * r.value)) & 15)::integer as others_median2,
    count(*) as n_ratings
from {{ ref('stg_ratings') }} as r
inner join items as i using (item_key)
group by all
