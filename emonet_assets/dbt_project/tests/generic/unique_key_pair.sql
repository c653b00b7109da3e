{% test unique_key_pair(model, group_key, member_key) %}
{#- One row per (group_key, member_key), for integer keys where a group has few members (an (image, emotion) and
its raters). A group whose member keys differ in their low 6 bits holds no repeat, which one 64-bit mask per group
shows; only the other groups (a repeat, two members 64 apart, or more than 64 members) are grouped by both keys.
Grouping 16M ratings by item instead of hashing every rating's key halves the test's time. -#}
with keys as not materialized (
    select {{ group_key }} as group_key, {{ member_key }} as member_key
    from {{ model }}
),

candidates as (
    select group_key
    from keys
    group by group_key
    having count(*) > 1 and count(*) <> bit_count(bit_or(1::ubigint << (member_key::bigint & 63)))
)

select k.group_key, k.member_key, count(*) as n_rows
from keys as k
semi join candidates as c on k.group_key is not distinct from c.group_key
group by all
having count(*) > 1
{% endtest %}
