-- The annotations table: every imported rating in import order, the order the batch files are scanned in.
SELECT * EXCLUDE (file_row_number)
FROM batch_ratings
