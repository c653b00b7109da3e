-- Per item (image, emotion, scale): how many ratings took each value 0..7, their sums, twice their median and the
-- batches they came in.
-- Ratings are integers 0..7, so medians, spreads, leave-one-out medians and alpha's coincidences all follow from
-- these counts; they are integers, exact in any row order.
-- Most images are rated in one batch (stg_images marks the others), and only those images' ratings are read again
-- to count their items' batches: a distinct count over every rating was over half the model's time, and a lowest and
-- highest batch per item made the per-item sums a CTE read twice, materialized at 40M rows for 1M images.
-- Stored in item key order, which is image, emotion, scale: the views over this table (consensus_labels,
-- int_agreement_item_stats) keep that order, so their exported Parquet holds each row group's few thousand image
-- ids in a dictionary: at 1M images a tenth of the bytes that 40M ids in hash order took, and as much faster to read.
with per_item as (
    select
        item_key,
        any_value(collection_key) as collection_key,
        count(*) as m,
        sum(value)::bigint as s1,
        sum(value * value)::bigint as s2,
        {% for v in range(8) -%}
        count(*) filter (where value = {{ v }}) as c{{ v }}{{ "," if not loop.last }}
        {% endfor -%}
    from {{ ref('stg_ratings') }}
    group by item_key
),

reannotated as (
    select item_key, count(distinct batch_key) as n_batches
    from {{ ref('stg_ratings') }}
    where {{ item_image_key('item_key') }} in (
        select image_key from {{ ref('stg_images') }} where rated_in_several_batches
    )
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
    coalesce(r.n_batches, 1) as n_batches,
    -- Stored once: consensus_labels is a view, and a test filtering on its median recomputed this for every item.
    {{ twice_median(cumulative(value_counts()), 'p.m') }} as twice_median
from per_item as p
left join reannotated as r using (item_key)
order by p.item_key
