-- The annotations table's files, one per imported batch, listed in import order, with each row's place in its file
-- (`file_row_number`). DuckDB keeps a single table function's scan in the listed order: import order.
CREATE TEMP VIEW annotation_ratings AS
SELECT * FROM read_parquet({{ files }}, union_by_name = true, file_row_number = true);
