-- Keys rated more than once across all batches: one rating per (collection, image, annotator, emotion). Returns the
-- rows in such keys, the keys, and up to five of them as examples. The ratings are grouped first by item (a 64-bit
-- hash of collection, image and emotion: a quarter as many groups as ratings), each group with two 64-bit masks of
-- its raters (bits 0-5 and 6-11 of the rater's hash). A repeated key sets fewer bits than its item has ratings in
-- both masks; so do two raters whose hashes share both bit ranges, or more than 64 raters. Only such items' ratings
-- are then grouped on the keys themselves, so a hash collision costs a few rows of work and never a false repeat:
-- 8.7 against 16.6 s for 152M ratings, where grouping every rating by the key's hash was the first step. The
-- ratings are read twice, not materialized.
WITH ratings AS NOT MATERIALIZED (
    SELECT
        collection,
        image_id,
        annotator,
        emotion_id,
        hash(collection, image_id, emotion_id) AS item_hash,
        hash(annotator) AS rater_hash
    FROM read_parquet({{ files }}, union_by_name = true)
),
candidate_items AS (
    SELECT item_hash
    FROM ratings
    GROUP BY item_hash
    HAVING count(*) > bit_count(bit_or(1::UBIGINT << (rater_hash & 63)))
        AND count(*) > bit_count(bit_or(1::UBIGINT << ((rater_hash >> 6) & 63)))
),
repeated AS (
    SELECT collection, image_id, annotator, emotion_id, count(*) AS n
    FROM ratings
    WHERE item_hash IN (SELECT item_hash FROM candidate_items)
    GROUP BY collection, image_id, annotator, emotion_id
    HAVING count(*) > 1
)
SELECT
    coalesce(sum(n), 0)::BIGINT AS rows,
    count(*)::BIGINT AS keys,
    list(concat_ws(' / ', collection, image_id, annotator, emotion_id) ORDER BY collection, image_id, annotator, emotion_id)[1:5]
        AS examples
FROM repeated;
