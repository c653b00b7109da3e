-- Per annotator: volume, how often they mark an emotion present, agreement with the leave-one-out
-- consensus, and drift of their bias (rating minus the others' median) from their first batch to their last
-- (by import time, batches imported at the same moment in id order, so that the ends do not depend on row order).
with keyed_ratings as (
    select
        collection_key,
        {{ item_scale_key('item_key') }} as scale_key,
        annotator_key,
        count(*) as n_ratings,
        count(distinct {{ item_image_key('item_key') }}) as n_images,
        count(distinct batch_key) as n_batches,
        avg((value >= 1)::int)::double as share_nonzero,
        avg(value)::double as mean_rating
    from {{ ref('stg_ratings') }}
    group by all
),

ratings as (
    select c.collection, {{ scale_name('r.scale_key') }} as scale, a.annotator, r.*
    from keyed_ratings as r
    inner join {{ collections() }} as c using (collection_key)
    inner join {{ ref('stg_annotators') }} as a using (annotator_key)
),

-- The leave-one-out table counts ratings per (rating, twice the others' median): differences from the median are
-- half-integers, so their sums are exact and the means are those of the ratings one by one.
loo_keyed as (
    select
        collection_key,
        scale_key,
        annotator_key,
        sum(n_ratings)::bigint as n_compared,
        sum(n_ratings * abs(2 * value - others_median2))::double / 2 / sum(n_ratings) as mean_abs_diff_vs_others,
        sum(n_ratings * (2 * value - others_median2))::double / 2 / sum(n_ratings) as bias_vs_others
    from {{ ref('int_leave_one_out') }}
    group by all
),

loo as (
    select c.collection, {{ scale_name('l.scale_key') }} as scale, a.annotator, l.*
    from loo_keyed as l
    inner join {{ collections() }} as c using (collection_key)
    inner join {{ ref('stg_annotators') }} as a using (annotator_key)
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
        c.collection,
        {{ scale_name('l.scale_key') }} as scale,
        a.annotator,
        l.batch_key,
        b.imported_at,
        sum(l.n_ratings * (2 * l.value - l.others_median2))::double / 2 / sum(l.n_ratings) as bias
    from {{ ref('int_leave_one_out') }} as l
    inner join {{ collections() }} as c using (collection_key)
    inner join {{ ref('stg_annotators') }} as a using (annotator_key)
    inner join {{ ref('stg_batches') }} as b using (batch_key)
    group by all
),

drift as (
    select
        collection,
        scale,
        annotator,
        arg_min(bias, (imported_at, batch_key)) as first_batch_bias,
        arg_max(bias, (imported_at, batch_key)) as last_batch_bias,
        last_batch_bias - first_batch_bias as drift
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
