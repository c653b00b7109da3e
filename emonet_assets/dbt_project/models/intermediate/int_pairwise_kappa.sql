-- Cohen's kappa with quadratic weights for every annotator pair on the items both rated (0–7 label indices).
with pairs as (
    select
        a.collection,
        a.scale,
        a.emotion_id,
        a.annotator as annotator_a,
        b.annotator as annotator_b,
        count(*) as n_common,
        sum(power(a.value - b.value, 2)) as observed,
        sum(a.value * a.value) + sum(b.value * b.value) - 2.0 * sum(a.value) * sum(b.value) / count(*) as expected
    from {{ ref('stg_ratings') }} as a
    inner join {{ ref('stg_ratings') }} as b
        on a.collection = b.collection and a.scale = b.scale and a.emotion_id = b.emotion_id
        and a.image_id = b.image_id and a.annotator < b.annotator
    group by all
)

select
    *,
    1 - observed / nullif(expected, 0) as kappa_quadratic
from pairs
