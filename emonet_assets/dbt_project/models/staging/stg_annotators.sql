-- One integer key per annotator, numbered in id order.
select (row_number() over (order by annotator) - 1)::integer as annotator_key, annotator
from (select distinct annotator from {{ source('emonet', 'annotations') }})
