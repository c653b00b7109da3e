-- A batch file written before the importer stored who rated it, with the raters its log row gives.
SELECT *, {{ raters }} AS raters FROM read_parquet({{ file }})
