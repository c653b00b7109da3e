-- One integer key per rated (collection, image), numbered in id order; the collection gets a small key too. An image
-- rated in more than one batch is marked, so that int_item_value_counts counts batches only for its items.
select
    (row_number() over (order by collection, image_id) - 1)::integer as image_key,
    (dense_rank() over (order by collection) - 1)::integer as collection_key,
    collection,
    image_id,
    rated_in_several_batches
from (
    select collection, image_id, min(batch_id) <> max(batch_id) as rated_in_several_batches
    from {{ source('emonet', 'annotations') }}
    group by collection, image_id
)
