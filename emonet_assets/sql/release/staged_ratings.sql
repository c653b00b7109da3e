-- The released images' ratings and intensity consensus, each in a temp table sorted by split and image: a chunk
-- of one split's images (split_rows.sql) then reads only the row groups that hold it, whatever the table's size,
-- and DuckDB spills these tables to its temp directory past its memory limit.
CREATE OR REPLACE TEMP TABLE release_ratings AS
SELECT i.split, r.image_id, r.annotator, r.emotion_id, r.scale, r.value, r.batch_id, r.source_row
FROM annotations AS r
JOIN release_images AS i ON r.image_id = i.image_sha256
WHERE r.collection = {{ collection }}
ORDER BY i.split, r.image_id;

CREATE OR REPLACE TEMP TABLE release_consensus AS
SELECT
    i.split,
    c.image_id,
    e.ord,
    c.emotion_id,
    c.median_rating,
    c.mean_rating,
    c.std_rating,
    c.n_ratings,
    c.is_confident
FROM consensus_labels AS c
JOIN release_emotions AS e ON c.emotion_id = e.emotion_id
JOIN release_images AS i ON c.image_id = i.image_sha256
WHERE c.collection = {{ collection }} AND c.scale = 'intensity'
ORDER BY i.split, c.image_id;
