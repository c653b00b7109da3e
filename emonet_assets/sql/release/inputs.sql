-- The release's input tables as views over their Parquet files. The generation manifest and QC keep each row's
-- place in the table (partition, then row), so "an image's newest manifest row" and "the first failures" mean
-- what they mean in the table.
CREATE OR REPLACE TEMP VIEW splits AS
SELECT * FROM read_parquet({{ splits }}, union_by_name = true);

CREATE OR REPLACE TEMP VIEW generated_images AS
SELECT * EXCLUDE (filename), parse_filename(filename, true) AS table_partition
FROM read_parquet({{ generated_images }}, union_by_name = true, filename = true, file_row_number = true);

CREATE OR REPLACE TEMP VIEW prompt_design AS
SELECT * FROM read_parquet({{ prompt_design }}, union_by_name = true);

CREATE OR REPLACE TEMP VIEW image_qc AS
SELECT * EXCLUDE (filename), parse_filename(filename, true) AS table_partition
FROM read_parquet({{ image_qc }}, union_by_name = true, filename = true, file_row_number = true);

CREATE OR REPLACE TEMP VIEW consensus_labels AS
SELECT * FROM read_parquet({{ consensus_labels }}, union_by_name = true);

CREATE OR REPLACE TEMP VIEW annotations AS
SELECT * FROM read_parquet({{ annotations }}, union_by_name = true);
