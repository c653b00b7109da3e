-- Who rated the released images, per kind of rater: batches, raters and ratings (every collection's ratings of
-- those image ids, as `annotation_batches.rating_sources` counts them). A table written before `raters` was
-- recorded reads as {{ raters }}.
SELECT {{ raters }} AS raters,
    count(DISTINCT batch_id) AS batches,
    count(DISTINCT annotator) AS annotators,
    count(*) AS ratings
FROM annotations
WHERE image_id IN (SELECT image_sha256 FROM release_images)
GROUP BY ALL;
