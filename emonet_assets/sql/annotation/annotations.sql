-- Every imported batch's accepted ratings, from the batch files listed in import order (import time, then batch),
-- with who its batch declared rated it and each row's place in its file (`file_row_number`). The importer writes a
-- file's rows in source order, so this scan, which DuckDB keeps in the listed order (a single table function, no
-- join), is import order: import time, batch, source row, then that place.
CREATE TEMP VIEW batch_ratings AS
SELECT *, map({{ batches }}, {{ raters }})[batch_id] AS raters
FROM read_parquet({{ files }}, union_by_name = true, file_row_number = true);
