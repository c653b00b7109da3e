-- Every imported batch's accepted ratings, read by glob over the batch files, with who its batch declared rated it;
-- `ord` numbers them in import order (import time, batch, source row, then the row's place in its file: a total
-- order, where a sort on the first three left a row's ratings in any order).
CREATE TEMP VIEW ordered_annotations AS
SELECT
    b.* EXCLUDE (file_row_number),
    i.raters,
    row_number() OVER (ORDER BY b.imported_at, b.batch_id, b.source_row, b.file_row_number) AS ord
FROM read_parquet({{ files }}, union_by_name = true, file_row_number = true) AS b
JOIN imported AS i USING (batch_id);
