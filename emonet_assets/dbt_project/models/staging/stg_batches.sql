-- One integer key per annotation batch, numbered in id order, with its import time. Each batch has one, so the
-- ratings do not carry it (casting it on every rating was 40% of stg_ratings). Kept as the instant it was recorded:
-- a cast to local time would order batches by the machine's time zone.
select (row_number() over (order by batch_id) - 1)::integer as batch_key, batch_id, imported_at
from (select batch_id, min(imported_at) as imported_at from {{ source('emonet', 'annotations') }} group by batch_id)
