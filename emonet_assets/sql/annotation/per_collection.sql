-- Ratings, images and annotators per (collection, scale), for the annotations asset's metadata.
SELECT
    collection,
    scale,
    count(*)::UINTEGER AS ratings,
    count(DISTINCT image_id)::UINTEGER AS images,
    count(DISTINCT annotator)::UINTEGER AS annotators
FROM annotation_ratings
GROUP BY collection, scale
ORDER BY collection, scale;
