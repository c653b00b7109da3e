-- Per emotion: Krippendorff's alpha with its bootstrap CI, mean pairwise quadratic kappa, and the human
-- ceiling (mean Spearman rho of each annotator against the median of the others).
with item_counts as (
    select
        collection_key,
        scale_key,
        emotion_key,
        sum(m)::bigint as n_ratings,
        count(*) as n_images,
        sum(s1)::double / sum(m) as mean_rating,
        sum(m - c0)::double / sum(m) as share_nonzero
    from {{ ref('int_item_value_counts') }}
    group by all
),

annotators as (
    select
        collection_key,
        {{ item_scale_key('item_key') }} as scale_key,
        {{ item_emotion_key('item_key') }} as emotion_key,
        count(distinct annotator_key) as n_annotators
    from {{ ref('stg_ratings') }}
    group by all
),

counts as (
    select c.collection, {{ scale_name('i.scale_key') }} as scale, e.emotion_id, i.*, a.n_annotators
    from item_counts as i
    inner join annotators as a using (collection_key, scale_key, emotion_key)
    inner join {{ collections() }} as c using (collection_key)
    inner join {{ ref('stg_emotions') }} as e using (emotion_key)
),

kappa as (
    select
        collection,
        scale,
        emotion_id,
        {{ ordered_mean('kappa_quadratic', 'annotator_a, annotator_b') }} as kappa_quadratic_mean,
        count(kappa_quadratic) as n_annotator_pairs
    from {{ ref('int_pairwise_kappa') }}
    where n_common >= {{ var('min_pair_items') }}
    group by all
),

ceiling as (
    select
        collection,
        scale,
        emotion_id,
        {{ ordered_mean('spearman_vs_others', 'annotator') }} as human_ceiling_spearman,
        count(spearman_vs_others) as n_ceiling_annotators
    from {{ ref('int_annotator_emotion_spearman') }}
    where n_items >= {{ var('min_pair_items') }}
    group by all
)

select
    c.collection,
    c.scale,
    c.emotion_id,
    t.emotion,
    t.emotion_group,
    c.n_ratings,
    c.n_images,
    c.n_annotators,
    coalesce(a.n_pairable_items, 0) as n_pairable_items,
    c.mean_rating,
    c.share_nonzero,
    a.alpha_interval,
    b.alpha_interval_ci_low,
    b.alpha_interval_ci_high,
    a.alpha_ordinal,
    b.alpha_ordinal_ci_low,
    b.alpha_ordinal_ci_high,
    b.resamples as bootstrap_resamples,
    k.kappa_quadratic_mean,
    coalesce(k.n_annotator_pairs, 0) as n_annotator_pairs,
    h.human_ceiling_spearman,
    coalesce(h.n_ceiling_annotators, 0) as n_ceiling_annotators
from counts as c
left join {{ ref('int_emotion_alpha') }} as a using (collection, scale, emotion_id)
left join {{ ref('agreement_bootstrap') }} as b using (collection, scale, emotion_id)
left join kappa as k using (collection, scale, emotion_id)
left join ceiling as h using (collection, scale, emotion_id)
left join {{ ref('stg_taxonomy') }} as t using (emotion_id)
