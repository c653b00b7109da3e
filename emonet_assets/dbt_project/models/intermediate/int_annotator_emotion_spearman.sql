-- Spearman rho (Pearson on average ranks) between each annotator and the median of the others, per emotion.
-- Ranks come from how many items share each rating and each others' median (ratings are 0..7, medians
-- half-integers), doubled to integers (average ranks are half-integers), so rho comes from exact integer sums.
with cells as (
    select
        collection_key,
        scale_key,
        emotion_key,
        annotator_key,
        value,
        others_median2,
        sum(n_ratings) as n
    from {{ ref('int_leave_one_out') }}
    group by all
),

ranked as (
    select
        *,
        2 * (sum(n) over (partition by collection_key, scale_key, emotion_key, annotator_key) - sum(n) over (
            partition by collection_key, scale_key, emotion_key, annotator_key order by value desc
        )) + sum(n) over (partition by collection_key, scale_key, emotion_key, annotator_key, value) + 1
            as value_rank2,
        2 * (sum(n) over (partition by collection_key, scale_key, emotion_key, annotator_key) - sum(n) over (
            partition by collection_key, scale_key, emotion_key, annotator_key order by others_median2 desc
        )) + sum(n) over (partition by collection_key, scale_key, emotion_key, annotator_key, others_median2) + 1
            as others_rank2
    from cells
),

sums as (
    select
        collection_key,
        scale_key,
        emotion_key,
        annotator_key,
        sum(n)::bigint as n_items,
        sum(n * value_rank2)::hugeint as sx,
        sum(n * others_rank2)::hugeint as sy,
        sum(n * value_rank2::hugeint * value_rank2) as sxx,
        sum(n * others_rank2::hugeint * others_rank2) as syy,
        sum(n * value_rank2::hugeint * others_rank2) as sxy
    from ranked
    group by all
)

select
    i.collection,
    {{ scale_name('s.scale_key') }} as scale,
    e.emotion_id,
    a.annotator,
    s.n_items,
    {{ pearson_from_sums('s.n_items', 'sx', 'sy', 'sxx', 'syy', 'sxy') }} as spearman_vs_others
from sums as s
inner join {{ collections() }} as i using (collection_key)
inner join {{ ref('stg_emotions') }} as e using (emotion_key)
inner join {{ ref('stg_annotators') }} as a using (annotator_key)
