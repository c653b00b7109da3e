-- Spearman rho (Pearson on average ranks) between each annotator and the median of the others, per emotion.
with ranked as (
    select
        collection,
        scale,
        emotion_id,
        annotator,
        rank() over (partition by collection, scale, emotion_id, annotator order by value)
        + (count(*) over (partition by collection, scale, emotion_id, annotator, value) - 1) / 2.0 as value_rank,
        rank() over (partition by collection, scale, emotion_id, annotator order by others_median)
        + (count(*) over (partition by collection, scale, emotion_id, annotator, others_median) - 1) / 2.0
            as others_rank
    from {{ ref('int_leave_one_out') }}
)

select
    collection,
    scale,
    emotion_id,
    annotator,
    count(*) as n_items,
    case when stddev_pop(value_rank) > 0 and stddev_pop(others_rank) > 0 then corr(value_rank, others_rank) end
        as spearman_vs_others
from ranked
group by all
