-- Per item (image, emotion, scale): how many ratings took each value 0..7, their sums, twice their median and the
-- batches they came in.
-- Ratings are integers 0..7, so medians, spreads, leave-one-out medians and alpha's coincidences all follow from
-- these counts; they are integers, exact in any row order.
-- Most items are rated in one batch: the lowest and highest batch key tell, and only the re-annotated items'
-- ratings are read again to count their batches (a distinct count over every rating was over half the model's time).
with per_item as (
    select
        item_key,
        any_value(collection_key) as collection_key,
        count(*) as m,
        sum(value)::bigint as s1,
        sum(value * value)::bigint as s2,
        {% for v in range(8) -%}
        count(*) filter (where value = {{ v }}) as c{{ v }},
        {% endfor -%}
        min(batch_key) as first_batch_key,
        max(batch_key) as last_batch_key
    from {{ ref('stg_ratings') }}
    group by item_key
),

reannotated as (
    select item_key, count(distinct batch_key) as n_batches
    from {{ ref('stg_ratings') }}
    where item_key in (select item_key from per_item where first_batch_key <> last_batch_key)
    group by item_key
)

select
    p.item_key,
    p.collection_key,
    {{ item_scale_key('p.item_key') }} as scale_key,
    {{ item_emotion_key('p.item_key') }} as emotion_key,
    {{ item_image_key('p.item_key') }} as image_key,
    p.m,
    p.s1,
    p.s2,
    {% for v in range(8) -%}
    p.c{{ v }},
    {% endfor -%}
    case when p.first_batch_key = p.last_batch_key then 1 else r.n_batches end as n_batches,
    -- Stored once: consensus_labels is a view, and a test filtering on its median recomputed this for every item.
    {{ twice_median(cumulative(value_counts()), 'p.m') }} as twice_median
from per_item as p
left join reannotated as r using (item_key)
