-- One integer key per rated emotion, numbered in id order; the packed item key has room for 2,048.
select
    case when n > 2048 then error('more than 2,048 emotions: widen the packed item key') else n - 1 end::integer
        as emotion_key,
    emotion_id
from (select row_number() over (order by emotion_id) as n, emotion_id
    from (select distinct emotion_id from {{ source('emonet', 'annotations') }}))
