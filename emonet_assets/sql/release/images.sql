-- One row per split image with its scalar release columns: the newest manifest row of the image, its prompt and
-- its QC row, left-joined so that what is missing is null (the refusals name it); and per image the count of
-- released emotions with intensity consensus and the mean number of ratings behind them. `image_ord` numbers the
-- images in split then sha256 order (the release's row order), so the staged ratings sort and filter on an integer.
CREATE OR REPLACE TEMP TABLE release_images AS
WITH split_images AS (
    SELECT image_sha256, min(split) AS split
    FROM splits
    GROUP BY image_sha256
),
newest AS (
    SELECT *
    FROM generated_images
    QUALIFY row_number() OVER (
        PARTITION BY image_sha256 ORDER BY table_partition DESC, file_row_number DESC
    ) = 1
),
labelled AS (
    SELECT c.image_id AS image_sha256, count(*) AS n_labelled, avg(c.n_ratings) AS mean_n_ratings
    FROM consensus_labels AS c
    JOIN release_emotions AS e ON c.emotion_id = e.emotion_id
    WHERE c.collection = {{ collection }} AND c.scale = 'intensity'
        AND c.image_id IN (SELECT image_sha256 FROM split_images)
    GROUP BY c.image_id
)
SELECT
    row_number() OVER (ORDER BY s.split, s.image_sha256) - 1 AS image_ord,
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
FROM split_images AS s
LEFT JOIN newest AS g ON s.image_sha256 = g.image_sha256
LEFT JOIN prompt_design AS p ON g.prompt_id = p.prompt_id
LEFT JOIN image_qc AS q ON s.image_sha256 = q.image_sha256
LEFT JOIN labelled AS l ON s.image_sha256 = l.image_sha256;
