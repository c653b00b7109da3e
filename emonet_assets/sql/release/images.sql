-- One row per split image with its scalar release columns: the newest manifest row of the image, its prompt and
-- its QC row, left-joined so that what is missing is null (the refusals name it); and per image the count of
-- released emotions with intensity consensus and the mean number of ratings behind them. `image_ord` numbers the
-- images in split then sha256 order (the release's row order), so the staged tables sort and filter on an integer;
-- the table is stored in that order too, so that a chunk's rows are a few row groups, not a scan of every image.
CREATE OR REPLACE TABLE release_split_images AS
SELECT row_number() OVER (ORDER BY split, image_sha256) - 1 AS image_ord, image_sha256, split
FROM (SELECT image_sha256, min(split) AS split FROM splits GROUP BY image_sha256);

-- The split images' intensity consensus on the release's emotions, sorted by `image_ord` (see staged_ratings.sql),
-- the emotion as its place in the release's list. The consensus is joined on its 64-character image ids once, here:
-- the per-image counts below are grouped on the integer.
CREATE OR REPLACE TABLE release_consensus AS
SELECT
    s.image_ord::UINTEGER AS image_ord,
    e.ord,
    c.median_rating,
    c.mean_rating,
    c.std_rating,
    c.n_ratings,
    c.is_confident
FROM consensus_labels AS c
JOIN release_emotions AS e ON c.emotion_id = e.emotion_id
JOIN release_split_images AS s ON c.image_id = s.image_sha256
WHERE c.collection = {{ collection }} AND c.scale = 'intensity'
ORDER BY s.image_ord;

CREATE OR REPLACE TABLE release_images AS
WITH newest AS (
    SELECT *
    FROM generated_images
    QUALIFY row_number() OVER (
        PARTITION BY image_sha256 ORDER BY table_partition DESC, file_row_number DESC
    ) = 1
),
labelled AS (
    SELECT image_ord, count(*) AS n_labelled, avg(n_ratings) AS mean_n_ratings
    FROM release_consensus
    GROUP BY image_ord
)
SELECT
    s.image_ord,
    s.image_sha256,
    s.split,
    g.prompt_id,
    g.image_path AS source_image_path,
    g.seed,
    g.model AS generation_model,
    g.model_fingerprint,
    g.license,
    g.scheduler,
    g.steps,
    g.guidance,
    g.width,
    g.height,
    g.shard,
    p.prompt,
    p.emotion_id,
    p.emotion,
    p.emotion_group,
    p.age,
    p.gender,
    p.ethnicity,
    p.ethnicity_group,
    p.occlusion,
    p.lighting,
    p.pose,
    p.template_id,
    p.cell_id,
    p.design_seed,
    p.design_version,
    p.taxonomy_version,
    q.passed AS qc_passed,
    coalesce(q.reasons, []::VARCHAR[]) AS qc_reasons,
    q.phash,
    coalesce(l.n_labelled, 0) AS n_labelled,
    l.mean_n_ratings
FROM release_split_images AS s
LEFT JOIN newest AS g ON s.image_sha256 = g.image_sha256
LEFT JOIN prompt_design AS p ON g.prompt_id = p.prompt_id
LEFT JOIN image_qc AS q ON s.image_sha256 = q.image_sha256
LEFT JOIN labelled AS l ON s.image_ord = l.image_ord
ORDER BY s.image_ord;
