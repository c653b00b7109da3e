-- Each rating beside the median of the other annotators on the same item: the basis of the human ceiling.
select
    r.collection,
    r.scale,
    r.emotion_id,
    r.image_id,
    r.annotator,
    r.batch_id,
    r.imported_at,
    r.value,
    median(o.value)::double as others_median,
    count(*) as n_others
from {{ ref('stg_ratings') }} as r
inner join {{ ref('stg_ratings') }} as o
    on r.collection = o.collection and r.scale = o.scale and r.emotion_id = o.emotion_id
    and r.image_id = o.image_id and r.annotator <> o.annotator
group by all
