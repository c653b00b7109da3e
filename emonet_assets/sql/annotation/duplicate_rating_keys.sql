-- Keys rated more than once across all batches: one rating per (collection, image, annotator, emotion). Returns the
-- rows in such keys, the keys, and up to five of them as examples.
WITH repeated AS (
    SELECT collection, image_id, annotator, emotion_id, count(*) AS n
    FROM read_parquet({{ files }}, union_by_name = true)
    GROUP BY collection, image_id, annotator, emotion_id
    HAVING count(*) > 1
)
SELECT
    coalesce(sum(n), 0)::BIGINT AS rows,
    count(*)::BIGINT AS keys,
    list(concat_ws(' / ', collection, image_id, annotator, emotion_id) ORDER BY collection, image_id, annotator, emotion_id)[1:5]
        AS examples
FROM repeated;
