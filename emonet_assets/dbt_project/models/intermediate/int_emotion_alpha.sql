-- Krippendorff's alpha per emotion, interval and ordinal, in closed form over pairable items: the coincidences
-- are sums over items of products of their value counts.
-- Every sum over items is an integer sum per item size m (exact in any row order); the few terms divided by
-- m - 1 are then added in a fixed order, so alpha and the gates on it are the same on every run and thread count.
-- Items with the same value counts add the same terms, so the sums run over each distinct (collection, scale,
-- emotion, counts) times its number of items: 14,077 patterns for the 4.2M pairable items of 105,300 images
-- (0.2 s against 0.9-1.1 s summing 72 terms per item).
with patterns as (
    select
        collection_key,
        scale_key,
        emotion_key,
        m,
        s1,
        s2,
        {% for c in value_counts() -%}
        {{ c }},
        {% endfor -%}
        count(*) as items
    from {{ ref('int_item_value_counts') }}
    where m >= 2
    group by all
),

interval_by_size as (
    select
        collection_key,
        scale_key,
        emotion_key,
        m,
        sum(items) as n_items,
        sum(items * m)::hugeint as n_values,
        sum(items * s1)::hugeint as t1,
        sum(items * s2)::hugeint as t2,
        sum(items * (m::hugeint * s2 - s1::hugeint * s1)) as within_numerator
    from patterns
    group by all
),

interval_terms as (
    select
        collection_key,
        scale_key,
        emotion_key,
        sum(n_values)::bigint as n_pairable_values,
        sum(n_items)::bigint as n_pairable_items,
        sum(t1) as t1,
        sum(t2) as t2,
        list_sum(list(within_numerator::double / (m - 1) order by m)) as within
    from interval_by_size
    group by all
),

pair_sums as (
    -- Per item size m and values c <= k: the sum of n_c·n_k (less n_c when c = k), and whether any item has both.
    select
        collection_key,
        scale_key,
        emotion_key,
        m,
        {% for c in range(8) %}{% for k in range(c, 8) -%}
        sum(items * c{{ c }} * c{{ k }}){{ " - sum(items * c" ~ c ~ ")" if c == k }} as o_{{ c }}_{{ k }},
        bool_or(c{{ c }} > 0{{ " and c" ~ k ~ " > 0" if c != k }}) as seen_{{ c }}_{{ k }}{{ "," if c < 7 }}
        {% endfor %}{% endfor %}
    from patterns
    group by all
),

coincidences_by_size as (
    {% for c in range(8) %}{% for k in range(8) -%}
    {%- set low, high = [c, k] | min, [c, k] | max -%}
    select collection_key, scale_key, emotion_key, m, {{ c }} as c, {{ k }} as k, o_{{ low }}_{{ high }} as o_numerator
    from pair_sums where seen_{{ low }}_{{ high }}
    {{ "union all" if not loop.last or c < 7 }}
    {% endfor %}{% endfor %}
),

coincidences as (
    select
        collection_key,
        scale_key,
        emotion_key,
        c,
        k,
        list_sum(list(o_numerator::double / (m - 1) order by m)) as o_ck
    from coincidences_by_size
    group by all
),

value_totals as (
    select
        collection_key,
        scale_key,
        emotion_key,
        c as value,
        list_sum(list(o_ck order by k)) as n_c
    from coincidences
    group by all
),

marginals as (
    select
        *,
        sum(n_c) over (partition by collection_key, scale_key, emotion_key order by value) as cum_c
    from value_totals
),

ordinal_distance as (
    select
        a.collection_key,
        a.scale_key,
        a.emotion_key,
        a.value as c,
        b.value as k,
        a.n_c * b.n_c as expected_weight,
        power(
            case when a.value <= b.value then b.cum_c - a.cum_c + a.n_c else a.cum_c - b.cum_c + b.n_c end
            - (a.n_c + b.n_c) / 2.0,
            2
        ) as delta
    from marginals as a
    inner join marginals as b using (collection_key, scale_key, emotion_key)
),

ordinal_terms as (
    select
        d.collection_key,
        d.scale_key,
        d.emotion_key,
        list_sum(list(coalesce(o.o_ck, 0) * d.delta order by d.c, d.k)) as observed,
        list_sum(list(d.expected_weight * d.delta order by d.c, d.k)) as expected
    from ordinal_distance as d
    left join coincidences as o
        on d.collection_key = o.collection_key and d.scale_key = o.scale_key and d.emotion_key = o.emotion_key
        and d.c = o.c and d.k = o.k
    group by all
)

select
    c.collection,
    {{ scale_name('i.scale_key') }} as scale,
    e.emotion_id,
    i.n_pairable_items,
    i.n_pairable_values,
    1 - (i.n_pairable_values - 1) * i.within
        / nullif((i.n_pairable_values * i.t2 - i.t1 * i.t1)::double, 0) as alpha_interval,
    1 - (i.n_pairable_values - 1) * o.observed / nullif(o.expected, 0) as alpha_ordinal
from interval_terms as i
inner join ordinal_terms as o using (collection_key, scale_key, emotion_key)
inner join {{ collections() }} as c using (collection_key)
inner join {{ ref('stg_emotions') }} as e using (emotion_key)
