-- Krippendorff's alpha per emotion, interval and ordinal, in closed form over pairable items.
-- Every sum over items is an integer sum per item size m (exact in any row order); the few terms divided by
-- m - 1 are then added in a fixed order, so alpha and the gates on it are the same on every run and thread count.
with item_stats as (
    select * from {{ ref('int_agreement_item_stats') }}
),

interval_by_size as (
    select
        collection,
        scale,
        emotion_id,
        m,
        count(*) as n_items,
        sum(m)::hugeint as n_values,
        sum(s1)::hugeint as t1,
        sum(s2)::hugeint as t2,
        sum(m::hugeint * s2 - s1::hugeint * s1) as within_numerator
    from item_stats
    group by all
),

interval_terms as (
    select
        collection,
        scale,
        emotion_id,
        sum(n_values)::bigint as n_pairable_values,
        sum(n_items)::bigint as n_pairable_items,
        sum(t1) as t1,
        sum(t2) as t2,
        list_sum(list(within_numerator::double / (m - 1) order by m)) as within
    from interval_by_size
    group by all
),

value_counts as (
    {% for v in range(8) -%}
    select collection, scale, emotion_id, image_id, m, {{ v }} as value, c{{ v }} as n_uv
    from item_stats where c{{ v }} > 0
    {{ "union all" if not loop.last }}
    {% endfor %}
),

coincidences_by_size as (
    select
        a.collection,
        a.scale,
        a.emotion_id,
        a.m,
        a.value as c,
        b.value as k,
        sum(a.n_uv::hugeint * b.n_uv - case when a.value = b.value then a.n_uv else 0 end) as o_numerator
    from value_counts as a
    inner join value_counts as b using (collection, scale, emotion_id, image_id, m)
    group by all
),

coincidences as (
    select
        collection,
        scale,
        emotion_id,
        c,
        k,
        list_sum(list(o_numerator::double / (m - 1) order by m)) as o_ck
    from coincidences_by_size
    group by all
),

value_totals as (
    select
        collection,
        scale,
        emotion_id,
        c as value,
        list_sum(list(o_ck order by k)) as n_c
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
        list_sum(list(coalesce(o.o_ck, 0) * d.delta order by d.c, d.k)) as observed,
        list_sum(list(d.expected_weight * d.delta order by d.c, d.k)) as expected
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
    1 - (i.n_pairable_values - 1) * i.within
        / nullif((i.n_pairable_values * i.t2 - i.t1 * i.t1)::double, 0) as alpha_interval,
    1 - (i.n_pairable_values - 1) * o.observed / nullif(o.expected, 0) as alpha_ordinal
from interval_terms as i
inner join ordinal_terms as o using (collection, scale, emotion_id)
