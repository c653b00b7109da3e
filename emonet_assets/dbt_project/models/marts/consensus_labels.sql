-- One consensus per (image, emotion): the median is the official one; binary items add majority,
-- unanimity and the release's triple positive agreement. Spread and disagreement come from exact integer sums,
-- so no flag depends on the order the ratings arrived in or on the thread count.
{% set disputed = std_exceeds('p.n_ratings', 'p.sum_rating', 'p.sum_squared_rating', var('max_item_std')) %}
with per_item as (
    select
        collection,
        scale,
        image_id,
        emotion_id,
        count(*) as n_ratings,
        avg(value)::double as mean_rating,
        median(value)::double as median_rating,
        sum(value)::hugeint as sum_rating,
        sum(value * value)::hugeint as sum_squared_rating,
        min(value) as min_rating,
        max(value) as max_rating,
        count(*) filter (where value >= 1) as n_positive,
        count(distinct batch_id) as n_batches
    from {{ ref('stg_ratings') }}
    group by all
)

select
    p.collection,
    p.scale,
    p.image_id,
    p.emotion_id,
    t.emotion,
    t.emotion_group,
    p.n_ratings,
    p.mean_rating,
    p.median_rating,
    {{ std_from_sums('p.n_ratings', 'p.sum_rating', 'p.sum_squared_rating') }} as std_rating,
    p.min_rating,
    p.max_rating,
    p.n_positive,
    case when p.scale = 'binary' then p.n_positive * 2 > p.n_ratings else p.median_rating >= 1 end as present,
    p.min_rating = p.max_rating as unanimous,
    case when p.scale = 'binary' then p.n_positive >= 3 and p.n_positive = p.n_ratings end
        as triple_positive_agreement,
    p.n_ratings >= {{ var('min_ratings') }} and not {{ disputed }} as is_confident,
    case
        when p.n_ratings < {{ var('min_ratings') }} then 'too_few_ratings'
        when {{ disputed }} then 'high_disagreement'
    end as low_confidence_reason,
    p.n_batches
from per_item as p
left join {{ ref('stg_taxonomy') }} as t using (emotion_id)
