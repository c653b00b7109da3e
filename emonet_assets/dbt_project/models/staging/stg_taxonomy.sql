select
    emotion_id,
    cast(emotion_index as integer) as emotion_index,
    emotion,
    group_id,
    "group" as emotion_group,
    valence,
    taxonomy_version
from {{ source('emonet', 'taxonomy') }}
