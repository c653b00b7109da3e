-- Per annotator: volume, how often they mark an emotion present, agreement with the leave-one-out
-- consensus, and drift of their bias (rating minus the others' median) from their first batch to their last.
with ratings as (
    select
        collection,
        scale,
        annotator,
        count(*) as n_ratings,
        count(distinct image_id) as n_images,
        count(distinct batch_id) as n_batches,
        avg((value >= 1)::int)::double as share_nonzero,
        avg(value)::double as mean_rating
    from {{ ref('stg_ratings') }}
    group by all
),

loo as (
    select
        collection,
        scale,
        annotator,
        count(*) as n_compared,
        avg(abs(value - others_median))::double as mean_abs_diff_vs_others,
        avg(value - others_median)::double as bias_vs_others
    from {{ ref('int_leave_one_out') }}
    group by all
),

per_emotion as (
    select
        collection,
        scale,
        annotator,
        {{ ordered_mean('spearman_vs_others', 'emotion_id') }} as mean_spearman_vs_others
    from {{ ref('int_annotator_emotion_spearman') }}
    where n_items >= {{ var('min_pair_items') }}
    group by all
),

batch_bias as (
    select
        collection,
        scale,
        annotator,
        batch_id,
        min(imported_at) as imported_at,
        avg(value - others_median)::double as bias
    from {{ ref('int_leave_one_out') }}
    group by all
),

drift as (
    select
        collection,
        scale,
        annotator,
        arg_min(bias, imported_at) as first_batch_bias,
        arg_max(bias, imported_at) as last_batch_bias,
        arg_max(bias, imported_at) - arg_min(bias, imported_at) as drift
    from batch_bias
    group by all
)

select
    r.collection,
    r.scale,
    r.annotator,
    r.n_ratings,
    r.n_images,
    r.n_batches,
    r.share_nonzero,
    r.mean_rating,
    coalesce(l.n_compared, 0) as n_compared,
    p.mean_spearman_vs_others,
    l.mean_abs_diff_vs_others,
    l.bias_vs_others,
    d.first_batch_bias,
    d.last_batch_bias,
    case when r.n_batches > 1 then d.drift end as drift
from ratings as r
left join loo as l using (collection, scale, annotator)
left join per_emotion as p using (collection, scale, annotator)
left join drift as d using (collection, scale, annotator)
