-- One split's release rows without the image bytes, in sha256 order: the scalar columns, the intensity consensus
-- per emotion in taxonomy order, and every rating of the image in (emotion, annotator, scale, batch, source row)
-- order with its sorted distinct batches. Only this split's images are aggregated.
WITH images AS (
    SELECT * FROM release_images WHERE split = $split
),
labels AS (
    SELECT
        c.image_id AS image_sha256,
        list(c.median_rating ORDER BY e.ord) AS intensity_median,
        list(
            struct_pack(
                emotion_id := c.emotion_id,
                median_rating := c.median_rating,
                mean_rating := c.mean_rating,
                std_rating := c.std_rating,
                n_ratings := c.n_ratings,
                is_confident := c.is_confident
            )
            ORDER BY e.ord
        ) AS consensus
    FROM consensus_labels AS c
    JOIN release_emotions AS e ON c.emotion_id = e.emotion_id
    WHERE c.collection = {{ collection }} AND c.scale = 'intensity'
        AND c.image_id IN (SELECT image_sha256 FROM images)
    GROUP BY c.image_id
),
ratings AS (
    SELECT
        image_id AS image_sha256,
        list(
            struct_pack(
                annotator := annotator,
                emotion_id := emotion_id,
                scale := scale,
                value := value,
                batch_id := batch_id,
                source_row := source_row
            )
            ORDER BY emotion_id, annotator, scale, batch_id, source_row
        ) AS ratings,
        list_sort(list_distinct(list(batch_id))) AS annotation_batch_ids
    FROM annotations
    WHERE collection = {{ collection }} AND image_id IN (SELECT image_sha256 FROM images)
    GROUP BY image_id
)
SELECT
    i.*,
    l.intensity_median,
    l.consensus,
    coalesce(r.ratings, []) AS ratings,
    coalesce(r.annotation_batch_ids, []::VARCHAR[]) AS annotation_batch_ids
FROM images AS i
LEFT JOIN labels AS l ON i.image_sha256 = l.image_sha256
LEFT JOIN ratings AS r ON i.image_sha256 = r.image_sha256
ORDER BY i.image_sha256;
