-- The external images (not generated here) the ratings name: the reference and batch of each one's first rating in
-- import order, in the order they first appear. Only these ratings are numbered, so the sort is theirs alone.
WITH external AS (
    SELECT
        collection,
        image_id,
        image_ref,
        batch_id,
        row_number() OVER (ORDER BY imported_at, batch_id, source_row, file_row_number) AS ord
    FROM annotation_ratings
    WHERE collection != {{ generated }}
)
SELECT
    collection,
    image_id,
    arg_min_null(image_ref, ord) AS image_ref,
    arg_min_null(batch_id, ord) AS first_batch_id,
    count(*)::UINTEGER AS ratings
FROM external
GROUP BY collection, image_id
ORDER BY min(ord);
