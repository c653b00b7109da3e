-- Per item (image, emotion, scale): how many ratings took each value 0..7, their sums and the batches they came in.
-- Ratings are integers 0..7, so medians, spreads, leave-one-out medians and alpha's coincidences all follow from
-- these counts; they are integers, exact in any row order.
select
    item_key,
    any_value(collection_key) as collection_key,
    item_key % 2 as scale_key,
    (item_key // 2 % 2048)::integer as emotion_key,
    (item_key // 4096)::integer as image_key,
    count(*) as m,
    sum(value)::bigint as s1,
    sum(value * value)::bigint as s2,
    {% for v in range(8) -%}
    count(*) filter (where value = {{ v }}) as c{{ v }},
    {% endfor -%}
    count(distinct batch_key) as n_batches
from {{ ref('stg_ratings') }}
group by item_key
