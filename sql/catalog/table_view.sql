-- A view over every partition file of one Parquet table; schemas are unioned by column name.
CREATE OR REPLACE VIEW {{ view }} AS
SELECT * FROM read_parquet({{ files }}, union_by_name = true);
