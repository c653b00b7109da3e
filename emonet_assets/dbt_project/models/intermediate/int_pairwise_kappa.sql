-- Cohen's kappa with quadratic weights for every annotator pair on the items both rated (0–7 label indices): pairs
-- are found on the packed item key, and the sums are integers.
with ratings as (
    select item_key, collection_key, scale_key, emotion_key, annotator_key, value from {{ ref('stg_ratings') }}
),

sums as (
    select
        a.collection_key,
        a.scale_key,
        a.emotion_key,
        a.annotator_key as annotator_key_a,
        b.annotator_key as annotator_key_b,
        count(*) as n_common,
        sum((a.value - b.value) * (a.value - b.value)) as sum_squared_difference,
        sum(a.value * a.value) as sum_aa,
        sum(b.value * b.value) as sum_bb,
        sum(a.value) as sum_a,
        sum(b.value) as sum_b
    from ratings as a
    inner join ratings as b on a.item_key = b.item_key and a.annotator_key < b.annotator_key
    group by all
),

pairs as (
    select
        c.collection,
        {{ scale_name('s.scale_key') }} as scale,
        e.emotion_id,
        a.annotator as annotator_a,
        b.annotator as annotator_b,
        s.n_common,
        s.sum_squared_difference::double as observed,
        s.sum_aa + s.sum_bb - 2.0 * s.sum_a * s.sum_b / s.n_common as expected
    from sums as s
    inner join {{ collections() }} as c using (collection_key)
    inner join {{ ref('stg_emotions') }} as e using (emotion_key)
    inner join {{ ref('stg_annotators') }} as a on s.annotator_key_a = a.annotator_key
    inner join {{ ref('stg_annotators') }} as b on s.annotator_key_b = b.annotator_key
)

select
    *,
    1 - observed / nullif(expected, 0) as kappa_quadratic
from pairs
