"""The ratings' data-quality suite at any size: Great Expectations file by file (the table holds a file per batch),
each file a bounded piece at a time (its rules are row by row, so they hold for the table when they hold for every
piece; never the whole table in pandas), and the one rule that spans rows, one rating per key, as a SQL test."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

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
# Rows of one file GX sees at once: about 1M rows, under 1 GB in pandas (a 15M-row batch whole took 16 GB).
PIECE_ROWS = 1_024_000
# Only the columns the suite reads: GX fingerprints each piece by hashing every value of every column, and the
# per-row references (`source_ref`, unique per rating) alone cost more than the rules. The integers reach pandas as
# int64, since GX's between-rule runs a Python function per value on any other integer type.
INTEGER_COLUMNS = ("source_row", "value")
STRING_COLUMNS = tuple(c for c in RATING_COLUMNS if c not in INTEGER_COLUMNS)


def _frame(batches: list[pa.RecordBatch], columns: list[str]) -> pd.DataFrame:
    """The batches (of one file, or none) as one pandas piece of `columns`: one that the file lacks is all nulls, as
    DuckDB's `union_by_name` read it; the string columns are categoricals on the file's own dictionaries."""
    table = pa.Table.from_batches(batches, batches[0].schema if batches else pa.schema([]))
    arrays = {}
    for name in columns:
        if name not in table.column_names:
            kind = pa.int64() if name in INTEGER_COLUMNS else pa.dictionary(pa.int32(), pa.string())
            arrays[name] = pa.nulls(table.num_rows, kind)
        elif name in INTEGER_COLUMNS:
            arrays[name] = table.column(name).cast(pa.int64())
        else:
            arrays[name] = table.column(name)
    return pa.table(arrays).to_pandas()


def _columns_and_rows(store: Store, paths: list[str]) -> tuple[list[str], int]:
    """The suite's columns that any file has (one missing from every file is left out of the pieces, so GX fails
    its rules naming the column) and the files' rows, from their footers."""
    names, rows = set(), 0
    for path in paths:
        with store.open(path) as handle:
            metadata = pq.read_metadata(handle)
            names.update(metadata.schema.names)
            rows += metadata.num_rows
    return [c for c in RATING_COLUMNS if c in names], rows


def _file_pieces(store: Store, path: str, columns: list[str]) -> Iterator[pd.DataFrame]:
    """One file's rows, a bounded piece at a time, read by Arrow with the strings as the file's own dictionaries:
    pandas gets categoricals with no Python object and no hash per value (DuckDB's fetch made every string, which
    pandas then encoded again: 2.6 s against 0.5 s for 8M ratings)."""
    with store.open(path) as handle:
        metadata = pq.read_metadata(handle)
        read = [c for c in columns if c in metadata.schema.names]
        parquet = pq.ParquetFile(handle, metadata=metadata, read_dictionary=[c for c in read if c in STRING_COLUMNS])
        pending, held = [], 0
        for batch in parquet.iter_batches(PIECE_ROWS, columns=read):
            pending.append(batch)
            held += batch.num_rows
            if held >= PIECE_ROWS:
                yield _frame(pending, columns)
                pending, held = [], 0
        if held:
            yield _frame(pending, columns)


def _validate_files(root: str, storage_options: dict, columns: list[str], emotion_ids: list[str], paths: list[str]):
    """The suite's results over the files' pieces, in order, the next piece read while GX validates this one. It
    opens the store and builds the suite itself, so that it runs as well in a worker process."""
    store = Store(root, storage_options)
    pieces = read_ahead(piece for path in paths for piece in _file_pieces(store, path, columns))
    return list(validate_each(pieces, "annotations", rating_expectations(emotion_ids)))


def check_ratings(
    store: Store,
    table: str,
    emotion_ids: list[str],
    settings: Mapping[str, object] | None = None,
    workers: int = 1,
) -> tuple[int, SuiteResult]:
    """The table's row count and the suite's result: the row rules per file (failures summed over files, in file
    order), then the key-uniqueness test over every row, which reports the rows in repeated keys as GX's compound
    rule did; `settings` are DuckDB's. GX's work is Python, one core per process: up to `workers` processes
    validate the files, no more than one for each file and each piece's worth of rows (starting one costs seconds:
    a small table is checked here)."""
    paths = [store.table_path(table, part) for part in store.table_partitions(table)]
    columns, rows = _columns_and_rows(store, paths)
    validate = partial(_validate_files, store.root, store.storage_options, columns, emotion_ids)
    workers = min(workers, len(paths), rows // PIECE_ROWS)
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = [result for found in pool.map(validate, [[path] for path in paths]) for result in found]
    else:
        results = validate(paths)
    if not results:  # a table of no rows: one empty piece, so that GX still checks the columns
        empty = _frame([], columns)
        results = list(validate_each(iter([empty]), "annotations", rating_expectations(emotion_ids)))
    files = quote_literal(store.table_glob(table))
    with scratch(store, settings) as con:
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
