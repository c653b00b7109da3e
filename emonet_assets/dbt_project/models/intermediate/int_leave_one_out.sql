-- Each rating beside the median of the other annotators on the same item (the basis of the human ceiling), counted
-- per (emotion, annotator, batch, rating, others' median): the others' median comes from the item's value counts
-- less the rating itself, so no rating is joined to its item's other ratings. Items with the same ratings are one
-- pattern (int_rating_patterns): its counts come from its list, and each of its ratings counts once per item.
-- Each pattern carries the others' median for each rating 0..7 it could leave out, twice each (0..14, four bits)
-- packed into one 32-bit integer.
{% set by_value = [] %}
{% for v in range(8) %}
    {% set others = [] %}
    {% for u in range(8) %}{% do others.append('(k' ~ u ~ ' - ' ~ (1 if v <= u else 0) ~ ')') %}{% endfor %}
    {% do by_value.append('(' ~ twice_median(others, 'm - 1') ~ '::uinteger << ' ~ 4 * v ~ ')') %}
{% endfor %}
with counts as (
    select
        *,
        {% for c in value_counts() -%}
        len(list_filter(codes, code -> {{ code_rating('code') }} = {{ loop.index0 }})) as {{ c }},
        {% endfor -%}
        len(codes) as m
    from {{ ref('int_rating_patterns') }}
),

cumulative_counts as (
    select
        *,
        {% for c in cumulative(value_counts()) -%}
        {{ c }} as k{{ loop.index0 }}{{ "," if not loop.last }}
        {% endfor %}
    from counts
),

patterns as (
    select *, {{ by_value | join(' | ') }} as others_median2_by_value
    from cumulative_counts
)

select
    p.collection_key,
    p.scale_key,
    p.emotion_key,
    {{ code_annotator_key('r.code') }} as annotator_key,
    {{ code_batch_key('r.code') }} as batch_key,
    {{ code_rating('r.code') }} as value,
    ((p.others_median2_by_value >> (4 * {{ code_rating('r.code') }})) & 15)::integer as others_median2,
    sum(p.items)::bigint as n_ratings
from patterns as p, unnest(p.codes) as r (code)
group by all
