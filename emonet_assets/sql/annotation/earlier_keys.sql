-- The keys of the batch being imported (`batch_keys`) that other batches already accepted, each with the first such
-- batch by id, joined in DuckDB over the batch files that share an image with it (files_sharing_images.sql).
SELECT b.image_id, b.annotator, b.emotion_id, min(b.batch_id) AS batch_id
FROM read_parquet({{ files }}, union_by_name = true) AS b
JOIN batch_keys AS k ON b.image_id = k.image_id AND b.annotator = k.annotator AND b.emotion_id = k.emotion_id
WHERE b.batch_id != {{ batch_id }}
GROUP BY b.image_id, b.annotator, b.emotion_id;
