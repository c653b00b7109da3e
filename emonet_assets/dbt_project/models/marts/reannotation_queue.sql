-- Items experts should rate again: too few ratings, an item the raters split on, or a disputed item of an
-- emotion whose agreement as a whole is low.
with items as (
    select
        c.*,
        a.alpha_interval as emotion_alpha
    from {{ ref('consensus_labels') }} as c
    left join {{ ref('emotion_agreement') }} as a using (collection, scale, emotion_id)
)

select
    collection,
    scale,
    image_id,
    emotion_id,
    emotion,
    n_ratings,
    median_rating,
    std_rating,
    emotion_alpha,
    case
        when n_ratings < {{ var('min_ratings') }} then 'too_few_ratings'
        when low_confidence_reason = 'high_disagreement' then 'high_disagreement'
        else 'low_emotion_agreement'
    end as reason,
    {{ var('min_ratings') }} - least(n_ratings, {{ var('min_ratings') }}) as ratings_missing
from items
where n_ratings < {{ var('min_ratings') }}
    or low_confidence_reason = 'high_disagreement'
    or (coalesce(emotion_alpha, 0) < {{ var('min_emotion_alpha') }} and max_rating - min_rating >= 2)
