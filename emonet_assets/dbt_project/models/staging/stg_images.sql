-- One integer key per rated (collection, image), numbered in id order; the collection gets a small key too.
select
    (row_number() over (order by collection, image_id) - 1)::integer as image_key,
    (dense_rank() over (order by collection) - 1)::integer as collection_key,
    collection,
    image_id
from (select distinct collection, image_id from {{ source('emonet', 'annotations') }})
