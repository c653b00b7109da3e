-- A view over every partition file of one Parquet table, now and later (a glob); schemas are unioned by column name.
CREATE VIEW IF NOT EXISTS {{ view }} AS
SELECT * FROM read_parquet({{ files }}, union_by_name = true);
