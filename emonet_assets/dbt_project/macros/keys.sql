{#- Integer keys: the ratings carry small integer codes for image, annotator, batch and emotion (dimension tables
    in staging, numbered in the order of their string ids, so ordering by a code orders by the id) and one packed
    item key. Joins and group-bys run on these; the marts join the string ids back at the end. -#}

{% macro scale_key(scale) -%}
    {#- The two accepted scales as 0/1, in the order of their names. -#}
    case {{ scale }} when 'binary' then 0 when 'intensity' then 1 end
{%- endmacro %}

{% macro scale_name(key) -%}
    case {{ key }} when 0 then 'binary' when 1 then 'intensity' end
{%- endmacro %}

{% macro item_key(image_key, emotion_key, scale_key) -%}
    {#- (image, emotion, scale) packed into one bigint; an image key names its collection too. -#}
    ({{ image_key }}::bigint * 4096 + {{ emotion_key }} * 2 + {{ scale_key }})
{%- endmacro %}

{% macro item_scale_key(item_key) -%}
    ({{ item_key }} % 2)
{%- endmacro %}

{% macro item_emotion_key(item_key) -%}
    ({{ item_key }} // 2 % 2048)::integer
{%- endmacro %}

{% macro item_image_key(item_key) -%}
    ({{ item_key }} // 4096)::integer
{%- endmacro %}

{% macro value_counts() -%}
    {#- The count columns of int_item_value_counts, c0..c7. -#}
    {{- return(['c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'c6', 'c7']) -}}
{%- endmacro %}

{% macro cumulative(counts) -%}
    {#- Running sums of 8 count expressions: how many ratings are at or below each value 0..7. -#}
    {%- set sums = [] -%}
    {%- for v in range(8) -%}{%- do sums.append('(' ~ counts[:v + 1] | join(' + ') ~ ')') -%}{%- endfor -%}
    {{- return(sums) -}}
{%- endmacro %}

{% macro kth_value(cumulative, k) -%}
    {#- The k-th smallest (from 0) of integer ratings 0..7 given their cumulative counts: how many values have at
        most k ratings at or below them. -#}
    ({% for c in cumulative %}({{ c }} <= {{ k }})::int{{ " + " if not loop.last }}{% endfor %})
{%- endmacro %}

{% macro twice_median(cumulative, n) -%}
    {#- Twice the median of n integer ratings 0..7 (an integer: medians are half-integers), from their cumulative
        counts: the two middle order statistics, the same one twice for odd n. -#}
    ({{ kth_value(cumulative, '((' ~ n ~ ') - 1) // 2') }} + {{ kth_value(cumulative, '(' ~ n ~ ') // 2') }})
{%- endmacro %}

{% macro collections() -%}
    {#- The collection of each collection key. -#}
    (select distinct collection_key, collection from {{ ref('stg_images') }})
{%- endmacro %}

{% macro rating_code(batch_key, annotator_key, value) -%}
    {#- One rating of an item as one bigint: batch key, annotator key (32 bits) and rating (3 bits), so that an item's
        ratings sort by batch, then annotator. -#}
    (({{ batch_key }}::bigint << 35) | ({{ annotator_key }}::bigint << 3) | {{ value }})
{%- endmacro %}

{% macro code_annotator_rating(code) -%}
    {#- A rating code less its batch: annotator key * 8 + rating. -#}
    ({{ code }} & ((1::bigint << 35) - 1))
{%- endmacro %}

{% macro code_batch_key(code) -%}
    ({{ code }} >> 35)::integer
{%- endmacro %}

{% macro code_annotator_key(code) -%}
    (({{ code }} >> 3) & ((1::bigint << 32) - 1))::integer
{%- endmacro %}

{% macro code_rating(code) -%}
    ({{ code }} & 7)::integer
{%- endmacro %}
