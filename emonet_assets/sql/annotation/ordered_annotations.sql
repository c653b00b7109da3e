-- The annotations table: every imported rating in import order.
SELECT * EXCLUDE (file_row_number)
FROM batch_ratings
ORDER BY imported_at, batch_id, source_row, file_row_number
