-- Spearman rho (Pearson on average ranks) between each annotator and the median of the others, per emotion.
-- Ranks are doubled to integers (average ranks are half-integers), so rho comes from exact integer sums.
with ranked as (
    select
        collection,
        scale,
        emotion_id,
        annotator,
        2 * rank() over (partition by collection, scale, emotion_id, annotator order by value)
        + count(*) over (partition by collection, scale, emotion_id, annotator, value) - 1 as value_rank2,
        2 * rank() over (partition by collection, scale, emotion_id, annotator order by others_median)
        + count(*) over (partition by collection, scale, emotion_id, annotator, others_median) - 1
            as others_rank2
    from {{ ref('int_leave_one_out') }}
),

sums as (
    select
        collection,
        scale,
        emotion_id,
        annotator,
        count(*) as n_items,
        sum(value_rank2)::hugeint as sx,
        sum(others_rank2)::hugeint as sy,
        sum(value_rank2::hugeint * value_rank2) as sxx,
        sum(others_rank2::hugeint * others_rank2) as syy,
        sum(value_rank2::hugeint * others_rank2) as sxy
    from ranked
    group by all
)

select
    collection,
    scale,
    emotion_id,
    annotator,
    n_items,
    {{ pearson_from_sums('n_items', 'sx', 'sy', 'sxx', 'syy', 'sxy') }} as spearman_vs_others
from sums
