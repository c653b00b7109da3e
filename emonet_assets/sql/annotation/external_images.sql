-- The external images (not generated here) the ratings name: the reference and batch of each one's first rating,
-- in the order they first appear.
SELECT
    collection,
    image_id,
    arg_min_null(image_ref, ord) AS image_ref,
    arg_min_null(batch_id, ord) AS first_batch_id,
    count(*)::UINTEGER AS ratings
FROM ordered_annotations
WHERE collection != {{ generated }}
GROUP BY collection, image_id
ORDER BY min(ord);
