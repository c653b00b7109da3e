-- Accepted ratings, typed, as the integer keys every later model joins and groups on: no string column, as each
-- one written here costs one to two seconds per 15M ratings. The item key packs image, emotion and scale (read back
-- with `item_image_key`, `item_emotion_key`, `item_scale_key`): three columns fewer to write, a quarter of the
-- model's time. The ids are in the key dimensions (stg_images, stg_emotions, stg_annotators, stg_batches,
-- stg_scales), a batch's import time in stg_batches; the annotations table keeps the rest.
select
    {{ item_key('i.image_key', 'e.emotion_key', scale_key('r.scale')) }} as item_key,
    i.collection_key,
    a.annotator_key,
    b.batch_key,
    cast(r.value as integer) as value
from {{ source('emonet', 'annotations') }} as r
left join {{ ref('stg_images') }} as i
    on r.collection = i.collection and r.image_id = i.image_id
left join {{ ref('stg_emotions') }} as e on r.emotion_id = e.emotion_id
left join {{ ref('stg_annotators') }} as a on r.annotator = a.annotator
left join {{ ref('stg_batches') }} as b on r.batch_id = b.batch_id
