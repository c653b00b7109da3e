-- Krippendorff's alpha per emotion, interval and ordinal, in closed form over pairable items.
with item_stats as (
    select * from {{ ref('int_agreement_item_stats') }}
),

interval_terms as (
    select
        collection,
        scale,
        emotion_id,
        sum(m) as n_pairable_values,
        count(*) as n_pairable_items,
        sum(s1) as t1,
        sum(s2) as t2,
        sum((m * s2 - s1 * s1) / (m - 1)) as within
    from item_stats
    group by all
),

value_counts as (
    {% for v in range(8) -%}
    select collection, scale, emotion_id, image_id, m, {{ v }} as value, c{{ v }} as n_uv
    from item_stats where c{{ v }} > 0
    {{ "union all" if not loop.last }}
    {% endfor %}
),

coincidences as (
    select
        a.collection,
        a.scale,
        a.emotion_id,
        a.value as c,
        b.value as k,
        sum((a.n_uv * b.n_uv - case when a.value = b.value then a.n_uv else 0 end) / (a.m - 1)) as o_ck
    from value_counts as a
    inner join value_counts as b using (collection, scale, emotion_id, image_id)
    group by all
),

value_totals as (
    select
        collection,
        scale,
        emotion_id,
        c as value,
        sum(o_ck) as n_c
    from coincidences
    group by all
),

marginals as (
    select
        *,
        sum(n_c) over (partition by collection, scale, emotion_id order by value) as cum_c
    from value_totals
),

ordinal_distance as (
    select
        a.collection,
        a.scale,
        a.emotion_id,
        a.value as c,
        b.value as k,
        a.n_c * b.n_c as expected_weight,
        power(
            case when a.value <= b.value then b.cum_c - a.cum_c + a.n_c else a.cum_c - b.cum_c + b.n_c end
            - (a.n_c + b.n_c) / 2.0,
            2
        ) as delta
    from marginals as a
    inner join marginals as b using (collection, scale, emotion_id)
),

ordinal_terms as (
    select
        d.collection,
        d.scale,
        d.emotion_id,
        sum(coalesce(o.o_ck, 0) * d.delta) as observed,
        sum(d.expected_weight * d.delta) as expected
    from ordinal_distance as d
    left join coincidences as o
        on d.collection = o.collection and d.scale = o.scale and d.emotion_id = o.emotion_id
        and d.c = o.c and d.k = o.k
    group by all
)

select
    i.collection,
    i.scale,
    i.emotion_id,
    i.n_pairable_items,
    i.n_pairable_values,
    1 - (i.n_pairable_values - 1) * i.within / nullif(i.n_pairable_values * i.t2 - i.t1 * i.t1, 0) as alpha_interval,
    1 - (i.n_pairable_values - 1) * o.observed / nullif(o.expected, 0) as alpha_ordinal
from interval_terms as i
inner join ordinal_terms as o using (collection, scale, emotion_id)
