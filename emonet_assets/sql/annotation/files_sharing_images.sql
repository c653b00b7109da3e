-- The other batch files that rate any image of the batch being imported (`batch_images`, its distinct images): a
-- scan of one column, so that the full key join (earlier_keys.sql) reads only those files, not every batch imported
-- so far.
SELECT DISTINCT b.filename
FROM read_parquet({{ files }}, union_by_name = true, filename = true) AS b
WHERE b.batch_id != {{ batch_id }} AND b.image_id IN (SELECT image_id FROM batch_images)
ORDER BY b.filename;
