"""The ratings' data-quality suite at any size: Great Expectations batch by batch (each batch of the annotations
table in pandas, never the whole table), and the one rule that spans batches, one rating per key, as a SQL test."""

from __future__ import annotations

from collections.abc import Mapping

from emonet_assets.lib.shared.catalog import quote_literal, render_sql, scratch
from emonet_assets.lib.shared.expectations import SuiteResult, merge, rating_expectations, validate
from emonet_assets.lib.shared.storage import Store

UNIQUE_KEY = "expect_compound_columns_to_be_unique"


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
        results = []
        for (batch,) in batches or [(None,)]:
            frame = con.execute(
                f"SELECT * EXCLUDE (imported_at) FROM read_parquet({files}, union_by_name = true) "
                "WHERE batch_id IS NOT DISTINCT FROM $1",
                [batch],
            ).df()
            results.append(validate(frame, "annotations", expectations))
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
