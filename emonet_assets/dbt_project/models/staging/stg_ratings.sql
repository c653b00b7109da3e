select
    batch_id,
    source_file,
    cast(source_row as bigint) as source_row,
    collection,
    image_id,
    annotator,
    emotion_id,
    scale,
    cast(value as integer) as value,
    cast(imported_at as timestamp) as imported_at
from {{ source('emonet', 'annotations') }}
