-- Every imported batch's accepted ratings, read by glob over the batch files, with who its batch declared rated it
-- and each row's place in its file (`file_row_number`): import order is import time, batch, source row, then that
-- place, a total order where a sort on the first three left a row's ratings in any order.
CREATE TEMP VIEW batch_ratings AS
SELECT b.*, i.raters
FROM read_parquet({{ files }}, union_by_name = true, file_row_number = true) AS b
JOIN imported AS i USING (batch_id);
