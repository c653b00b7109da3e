{#- Thresholds compared exactly, on integer sums: a float statistic compared with a threshold it equals (the
    ratings {0, 0, 2, 3} have a standard deviation of exactly 1.5) comes out just above or just below it
    depending on row order and thread count. -#}

{% macro decimal_fraction(threshold) -%}
    {#- (numerator, denominator) of a decimal literal such as 1.5 -> (15, 10); refuses exponents and signs. -#}
    {%- set text = threshold | string | trim -%}
    {%- if not modules.re.fullmatch('[0-9]+(\\.[0-9]+)?', text) -%}
        {{ exceptions.raise_compiler_error("threshold " ~ text ~ " must be a plain non-negative decimal such as 1.5") }}
    {%- endif -%}
    {%- set parts = text.split('.') -%}
    {%- set decimals = parts[1] if parts | length > 1 else '' -%}
    {{- return([(parts[0] ~ decimals) | int, 10 ** (decimals | length)]) -}}
{%- endmacro %}

{% macro std_exceeds(n, sum_x, sum_x2, threshold) -%}
    {#- stddev_samp > threshold for n integer ratings with sums sum_x and sum_x2, in exact integer arithmetic:
        n·Σx² − (Σx)² > t²·n·(n−1) with t = p/q, multiplied through by q². False for fewer than two ratings. -#}
    {%- set p, q = decimal_fraction(threshold) -%}
    ({{ n }} >= 2 and {{ q * q }}::hugeint * ({{ n }}::hugeint * {{ sum_x2 }} - {{ sum_x }}::hugeint * {{ sum_x }})
        > {{ p * p }}::hugeint * {{ n }} * ({{ n }} - 1))
{%- endmacro %}

{% macro std_from_sums(n, sum_x, sum_x2) -%}
    {#- The sample standard deviation from exact integer sums: the same value whatever order the rows came in. -#}
    case when {{ n }} >= 2 then
        sqrt(({{ n }}::hugeint * {{ sum_x2 }} - {{ sum_x }}::hugeint * {{ sum_x }})::double / ({{ n }} * ({{ n }} - 1)))
    end
{%- endmacro %}

{% macro ordered_mean(expression, order_by) -%}
    {#- avg() of floats adds them in arrival order, which shifts the last bits with row order and threads; this
        adds the non-null values in a fixed order. -#}
    (list_sum(list({{ expression }} order by {{ order_by }}) filter (where {{ expression }} is not null))
        / nullif(count({{ expression }}), 0))
{%- endmacro %}

{% macro pearson_from_sums(n, sum_x, sum_y, sum_xx, sum_yy, sum_xy) -%}
    {#- Pearson's r from exact integer sums (null when either side is constant): the same in any row order. -#}
    case when {{ n }}::hugeint * {{ sum_xx }} - {{ sum_x }}::hugeint * {{ sum_x }} > 0
        and {{ n }}::hugeint * {{ sum_yy }} - {{ sum_y }}::hugeint * {{ sum_y }} > 0 then
        ({{ n }}::hugeint * {{ sum_xy }} - {{ sum_x }}::hugeint * {{ sum_y }})::double / sqrt(
            ({{ n }}::hugeint * {{ sum_xx }} - {{ sum_x }}::hugeint * {{ sum_x }})::double
            * ({{ n }}::hugeint * {{ sum_yy }} - {{ sum_y }}::hugeint * {{ sum_y }})::double
        )
    end
{%- endmacro %}
