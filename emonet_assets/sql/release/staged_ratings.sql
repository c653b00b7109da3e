-- The released images' ratings and intensity consensus, each in a temp table sorted by the image's place in the
-- release (`image_ord`, an integer, cheaper to sort, compare and keep than split and a 64-character id): a chunk
-- of images (ReleaseRows.split_rows) then reads only the row groups that hold it, whatever the table's size, and
-- DuckDB spills these tables to its temp directory past its memory limit.
CREATE OR REPLACE TEMP TABLE release_ratings AS
SELECT i.image_ord, r.annotator, r.emotion_id, r.scale, r.value, r.batch_id, r.source_row
FROM annotations AS r
JOIN release_images AS i ON r.image_id = i.image_sha256
WHERE r.collection = {{ collection }}
ORDER BY i.image_ord;

CREATE OR REPLACE TEMP TABLE release_consensus AS
SELECT
    i.image_ord,
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
ORDER BY i.image_ord;
