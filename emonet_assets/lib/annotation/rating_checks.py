"""The ratings' data-quality suite at any size: Great Expectations batch by batch, each batch a bounded piece at a
time (its rules are row by row, so they hold for the table when they hold for every piece; never the whole table in
pandas), and the one rule that spans rows, one rating per key, as a SQL test."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pandas as pd

from emonet_assets.lib.shared.catalog import quote_literal, render_sql, scratch
from emonet_assets.lib.shared.expectations import (
    RATING_COLUMNS,
    SuiteResult,
    merge,
    rating_expectations,
    validate_each,
)
from emonet_assets.lib.shared.iteration import read_ahead
from emonet_assets.lib.shared.storage import Store

UNIQUE_KEY = "expect_compound_columns_to_be_unique"
# Rows of one batch GX sees at once: about 1M rows, under 1 GB in pandas (a 15M-row batch whole took 16 GB).
PIECE_ROWS = 1_024_000
# Only the columns the suite reads: GX fingerprints each piece by hashing every value of every column, and the
# per-row references (`source_ref`, unique per rating) alone cost more than the rules. Through Arrow, strings reach
# pandas as categoricals, with no Python object per value (DuckDB's pandas fetch makes objects that pandas then
# converts: half the check's time), and GX's set and null rules work on a few codes; the integers as int64, since
# GX's between-rule runs a Python function per value on any other integer type.
INTEGER_COLUMNS = ("source_row", "value")


def _pieces(con, files: str, batches: list[tuple]) -> Iterator[pd.DataFrame]:
    """Each batch's rows, a bounded piece at a time; a batch of no rows (an empty table) is one empty piece. A rule's
    column missing from the table is left out of the pieces, so GX fails that rule naming the column."""
    table = f"read_parquet({files}, union_by_name = true)"
    present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {table}").fetchall()}
    columns = [f"{c}::BIGINT AS {c}" if c in INTEGER_COLUMNS else c for c in RATING_COLUMNS if c in present]
    for (batch,) in batches:
        reader = con.execute(
            f"SELECT {', '.join(columns)} FROM {table} WHERE batch_id IS NOT DISTINCT FROM $1",
            [batch],
        ).to_arrow_reader(PIECE_ROWS)
        empty = True
        for piece in reader:
            empty = False
            yield piece.to_pandas(strings_to_categorical=True)
        if empty:
            yield reader.schema.empty_table().to_pandas(strings_to_categorical=True)


def check_ratings(
    store: Store, table: str, emotion_ids: list[str], settings: Mapping[str, object] | None = None
) -> tuple[int, SuiteResult]:
    """The table's row count and the suite's result: the row rules per batch (failures summed over batches), then
    the key-uniqueness test over every row, which reports the rows in repeated keys as GX's compound rule did."""
    files = quote_literal(store.table_glob(table))
    expectations = rating_expectations(emotion_ids)
    with scratch(store, settings) as con:
        rows = con.execute(f"SELECT count(*) FROM read_parquet({files}, union_by_name = true)").fetchone()[0]
        batches = con.execute(
            f"SELECT DISTINCT batch_id FROM read_parquet({files}, union_by_name = true) ORDER BY batch_id"
        ).fetchall()
        # The next piece is read while GX validates this one.
        pieces = read_ahead(_pieces(con, files, batches or [(None,)]))
        results = list(validate_each(pieces, "annotations", expectations))
        repeated, keys, examples = con.execute(render_sql("annotation/duplicate_rating_keys", files=files)).fetchone()
    per_batch = merge(results)
    failures = list(per_batch.failures)
    if repeated:
        observed = f"{keys} (collection, image, annotator, emotion) keys rated more than once"
        failures.append(
            {
                "expectation": UNIQUE_KEY,
                "column": None,
                "unexpected_count": repeated,
                "examples": examples,
                "observed": observed,
            }
        )
    return rows, SuiteResult(per_batch.success and not repeated, per_batch.evaluated + 1, failures)
