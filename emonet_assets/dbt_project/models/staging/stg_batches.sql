-- One integer key per annotation batch, numbered in id order.
select (row_number() over (order by batch_id) - 1)::integer as batch_key, batch_id
from (select distinct batch_id from {{ source('emonet', 'annotations') }})
