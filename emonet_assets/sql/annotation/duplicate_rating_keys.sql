-- Keys rated more than once across all batches: one rating per (collection, image, annotator, emotion). Returns the
-- rows in such keys, the keys, and up to five of them as examples. The keys are grouped first by their 64-bit hash
-- (half the time of grouping four strings); only rows whose hash repeats are then grouped on the keys themselves, so
-- a hash collision costs a few rows of work and never a false repeat. The ratings are read twice, not materialized.
WITH ratings AS NOT MATERIALIZED (
    SELECT collection, image_id, annotator, emotion_id, hash(collection, image_id, annotator, emotion_id) AS key_hash
    FROM read_parquet({{ files }}, union_by_name = true)
),
repeated_hashes AS (
    SELECT key_hash FROM ratings GROUP BY key_hash HAVING count(*) > 1
),
repeated AS (
    SELECT collection, image_id, annotator, emotion_id, count(*) AS n
    FROM ratings
    WHERE key_hash IN (SELECT key_hash FROM repeated_hashes)
    GROUP BY collection, image_id, annotator, emotion_id
    HAVING count(*) > 1
)
SELECT
    coalesce(sum(n), 0)::BIGINT AS rows,
    count(*)::BIGINT AS keys,
    list(concat_ws(' / ', collection, image_id, annotator, emotion_id) ORDER BY collection, image_id, annotator, emotion_id)[1:5]
        AS examples
FROM repeated;
