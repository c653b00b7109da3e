-- The released images' ratings in a table sorted by the image's place in the release (`image_ord`, an
-- integer, cheaper to sort, compare and keep than split and a 64-character id), as their consensus is
-- (images.sql): a chunk of images (ReleaseRows.split_rows) then reads only the row groups that hold it, whatever
-- the table's size. The release's connection keeps its tables in a database file (catalog.scratch_on_disk),
-- compressed, not in memory.
--
-- A staged row holds integers only: each string column of the ratings is a code into `release_rating_values`
-- (every column's distinct values, from one scan of the ratings), numbered in the values' sort order so that
-- sorting codes sorts the strings. A rating row is about 30 bytes instead of the hundred its strings took.
CREATE OR REPLACE TABLE release_rating_values AS
WITH distinct_values AS (
    SELECT
        CASE grouping(annotator, emotion_id, scale, batch_id)
            WHEN 7 THEN 'annotator' WHEN 11 THEN 'emotion_id' WHEN 13 THEN 'scale' ELSE 'batch_id'
        END AS column_name,
        coalesce(annotator, emotion_id, scale, batch_id) AS value
    FROM annotations
    WHERE collection = {{ collection }}
    GROUP BY GROUPING SETS ((annotator), (emotion_id), (scale), (batch_id))
)
SELECT column_name, value, (row_number() OVER (PARTITION BY column_name ORDER BY value) - 1)::UINTEGER AS code
FROM distinct_values;

-- One small table per column to join on: a join on the shared table's (column_name, value) is three times slower.
CREATE OR REPLACE TABLE release_annotator_codes AS
SELECT value, code FROM release_rating_values WHERE column_name = 'annotator';

CREATE OR REPLACE TABLE release_emotion_id_codes AS
SELECT value, code FROM release_rating_values WHERE column_name = 'emotion_id';

CREATE OR REPLACE TABLE release_scale_codes AS
SELECT value, code FROM release_rating_values WHERE column_name = 'scale';

CREATE OR REPLACE TABLE release_batch_id_codes AS
SELECT value, code FROM release_rating_values WHERE column_name = 'batch_id';

CREATE OR REPLACE TABLE release_ratings AS
SELECT
    i.image_ord::UINTEGER AS image_ord,
    a.code AS annotator,
    e.code AS emotion_id,
    s.code AS scale,
    r.value,
    b.code AS batch_id,
    r.source_row
FROM annotations AS r
JOIN release_images AS i ON r.image_id = i.image_sha256
JOIN release_annotator_codes AS a ON r.annotator IS NOT DISTINCT FROM a.value
JOIN release_emotion_id_codes AS e ON r.emotion_id IS NOT DISTINCT FROM e.value
JOIN release_scale_codes AS s ON r.scale IS NOT DISTINCT FROM s.value
JOIN release_batch_id_codes AS b ON r.batch_id IS NOT DISTINCT FROM b.value
WHERE r.collection = {{ collection }}
ORDER BY i.image_ord;
