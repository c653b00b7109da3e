-- Per-item sufficient statistics of every pairable (image, emotion): alpha and its bootstrap need only these.
-- Integers, so every sum over them is exact whatever order the rows arrive in.
select
    collection,
    scale,
    emotion_id,
    image_id,
    count(*) as m,
    sum(value)::bigint as s1,
    sum(value * value)::bigint as s2,
    {% for v in range(8) -%}
    count(*) filter (where value = {{ v }}) as c{{ v }}{{ "," if not loop.last }}
    {% endfor %}
from {{ ref('stg_ratings') }}
group by all
having count(*) >= 2
