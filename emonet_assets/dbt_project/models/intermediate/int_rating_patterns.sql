-- The pairable items' ratings as patterns: each item's ratings as one sorted list of codes (batch, annotator and
-- rating, `rating_code`), and the items of one (collection, scale, emotion) with the same list counted once. An
-- item's annotator pairs and leave-one-out medians follow from its list alone, so int_pairwise_kappa and
-- int_leave_one_out work on the patterns (371,301 for the 4.2M pairable items of 16M ratings) from this one
-- grouping of the ratings by item, where each grouped or joined every rating itself.
with per_item as (
    select
        item_key,
        any_value(collection_key) as collection_key,
        list_sort(list({{ rating_code('batch_key', 'annotator_key', 'value') }})) as codes
    from {{ ref('stg_ratings') }}
    group by item_key
    having count(*) >= 2
)

select
    collection_key,
    {{ item_scale_key('item_key') }}::integer as scale_key,
    {{ item_emotion_key('item_key') }} as emotion_key,
    codes,
    count(*) as items
from per_item
group by all
