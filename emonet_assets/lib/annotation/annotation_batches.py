"""Landed annotation files in, per-batch tables out; then the union every downstream model reads.

Per batch (partition = the file's sha256): accepted ratings, rejects and skips with their reasons,
`Extra Dimensions` side values, and a log row whose counts must add up. Nothing is written for a
batch except through these tables, so a rejected file leaves only its log row behind.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

import polars as pl

from emonet_assets.lib.annotation.annotation_formats import AnnotationFileError, parse_annotation_file
from emonet_assets.lib.annotation.annotation_import import (
    BatchResult,
    ImageIndex,
    import_batch,
    validate_collection_name,
)
from emonet_assets.lib.annotation.landing import (
    RATERS,
    BatchDeclaration,
    LandingError,
    find_batch_file,
    read_declaration,
)
from emonet_assets.lib.shared.catalog import copy_to_parquet, quote_list, quote_literal, render_sql, scratch, sql_text
from emonet_assets.lib.shared.rules import GENERATED
from emonet_assets.lib.shared.storage import UNPARTITIONED, Store
from emonet_assets.lib.shared.tables import Table
from emonet_assets.lib.taxonomy.taxonomy import Taxonomy

ACCEPTED_SCHEMA = {
    "batch_id": pl.String,
    "source_file": pl.String,
    "source_row": pl.Int64,
    "source_ref": pl.String,
    "collection": pl.String,
    "image_id": pl.String,
    "image_ref": pl.String,
    "annotator": pl.String,
    "emotion_id": pl.String,
    "scale": pl.String,
    "value": pl.Int32,
    "imported_at": pl.Datetime("us", "UTC"),
}

LOG_SCHEMA = {
    "batch_id": pl.String,
    "source_file": pl.String,
    "format": pl.String,
    "scale": pl.String,
    "collection": pl.String,
    "raters": pl.String,
    "status": pl.String,
    "message": pl.String,
    "rows_read": pl.Int64,
    "accepted": pl.Int64,
    "rejected": pl.Int64,
    "skipped": pl.Int64,
    "extras": pl.Int64,
    "notes": pl.List(pl.String),
    "imported_at": pl.Datetime("us", "UTC"),
}


@dataclass(frozen=True)
class LandedBatch:
    log: dict
    result: BatchResult | None = None

    @property
    def error(self) -> str | None:
        return self.log["message"] if self.log["status"] == "rejected" else None


def platform_images(store: Store) -> ImageIndex:
    """Every generated image, referable by prompt id, sha256, path, and (when declared) release-style id."""
    if not (store.has_table(Table.GENERATED_IMAGES) and store.has_table(Table.PROMPT_DESIGN)):
        return ImageIndex(refs={})
    return ImageIndex.from_tables(store.read_table(Table.GENERATED_IMAGES), store.read_table(Table.PROMPT_DESIGN))


def earlier_keys(
    store: Store, batch_id: str, settings: Mapping[str, object] | None = None
) -> Callable[[pl.DataFrame, pl.Series], pl.DataFrame]:
    """Which of a batch's keys other batches already accepted, found by a DuckDB join over their files: a rating
    lands once, whichever file brings it first. Only files that rate one of the batch's images are joined, found
    by a scan of their image ids alone, so that each import does not join every batch before it on all three
    keys."""
    empty = {"image_id": pl.String, "annotator": pl.String, "emotion_id": pl.String, "batch_id": pl.String}

    def lookup(keys: pl.DataFrame, image_ids: pl.Series) -> pl.DataFrame:
        others = [p for p in store.table_partitions(Table.ANNOTATION_BATCHES) if p != batch_id]
        if not others or keys.is_empty():
            return pl.DataFrame(schema=empty)
        with scratch(store, settings) as con:
            con.register("batch_images", image_ids.rename("image_id").to_frame().to_arrow())
            batch = quote_literal(batch_id)
            glob = quote_literal(store.table_glob(Table.ANNOTATION_BATCHES))
            sharing = con.sql(render_sql("annotation/files_sharing_images", files=glob, batch_id=batch)).fetchall()
            if not sharing:
                return pl.DataFrame(schema=empty)
            con.register("batch_keys", keys.unique().to_arrow())
            files = quote_list(name for (name,) in sharing)
            return con.sql(render_sql("annotation/earlier_keys", files=files, batch_id=batch)).pl()

    return lookup


def import_landed_batch(
    store: Store,
    landing: str,
    batch_id: str,
    taxonomy: Taxonomy,
    max_bytes: int,
    now: datetime | None = None,
    duckdb_settings: Mapping[str, object] | None = None,
) -> LandedBatch:
    now = now or datetime.now(UTC)
    landed = find_batch_file(store, landing, batch_id)
    log = {name: None for name in LOG_SCHEMA} | {"batch_id": batch_id, "source_file": landed.path, "imported_at": now}
    declaration = None
    try:
        declaration = read_declaration(store, landed.path)
        collection = validate_collection_name(declaration.collection) if declaration.collection else None
        if landed.size > max_bytes:
            raise AnnotationFileError(
                f"{landed.path}: {landed.size:,} bytes is over the {max_bytes:,}-byte limit (annotation.max_file_mb)"
            )
        parsed = parse_annotation_file(landed.path, store.read_bytes(landed.path), declaration.format, max_bytes)
    except (AnnotationFileError, LandingError, ValueError) as exc:
        log |= {
            "status": "rejected",
            "message": str(exc),
            "rows_read": 0,
            "accepted": 0,
            "rejected": 0,
            "skipped": 0,
            "extras": 0,
            "notes": [],
            "collection": declaration_collection(store, landed.path),
            "raters": declaration.raters if declaration else None,
        }
        store.write_table(Table.ANNOTATION_BATCH_LOG, pl.DataFrame([log], schema=LOG_SCHEMA), batch_id)
        return LandedBatch(log)
    images, earlier = platform_images(store), earlier_keys(store, batch_id, duckdb_settings)
    result = import_batch(parsed, batch_id, taxonomy, images, collection, earlier, declaration.positional_ids)
    store.write_table(Table.ANNOTATION_BATCHES, stored_batch(result.accepted, now, declaration.raters), batch_id)
    store.write_table(Table.ANNOTATION_REJECTS, rejects_and_skips(result), batch_id)
    store.write_table(Table.ANNOTATION_EXTRAS, result.extras, batch_id)
    positional = ["numbers read as prompt positions (positional ids declared)"] if declaration.positional_ids else []
    log |= {
        "format": parsed.format,
        "scale": parsed.scale,
        "collection": collection or GENERATED,
        "raters": declaration.raters,
        "status": "imported",
        "notes": [*parsed.notes, *positional, *result.label_notes()],
        **result.counts,
    }
    store.write_table(Table.ANNOTATION_BATCH_LOG, pl.DataFrame([log], schema=LOG_SCHEMA), batch_id)
    return LandedBatch(log, result)


def stored_batch(accepted: pl.DataFrame, imported_at: datetime, raters: str) -> pl.DataFrame:
    """A batch's accepted ratings as its `annotation_batches` file holds them: with its import time and who its
    declaration says rated it, the annotations table's columns, so that the table takes the file as it is."""
    return accepted.with_columns(imported_at=pl.lit(imported_at), raters=pl.lit(raters))


def declaration_collection(store: Store, path: str) -> str | None:
    try:
        return read_declaration(store, path).collection
    except LandingError:
        return None


def rejects_and_skips(result: BatchResult) -> pl.DataFrame:
    """One table of every unit that did not land, with `outcome` saying which."""
    return pl.concat(
        [
            result.rejects.with_columns(outcome=pl.lit("rejected")),
            result.skipped.with_columns(outcome=pl.lit("skipped")),
        ],
        how="diagonal_relaxed",
    )


def batch_log(store: Store) -> pl.DataFrame:
    """Every batch's log row. Rows written before `raters` was recorded read as the declaration's default, expert."""
    parts = store.table_partitions(Table.ANNOTATION_BATCH_LOG)
    frames = [
        pl.DataFrame(schema=LOG_SCHEMA),
        *(store.read_table(Table.ANNOTATION_BATCH_LOG, [part]) for part in parts),
    ]
    log = pl.concat(frames, how="diagonal_relaxed").select(list(LOG_SCHEMA))
    return log.with_columns(pl.col("raters").fill_null(BatchDeclaration().raters)).sort("imported_at")


def rating_sources(ratings: pl.DataFrame) -> pl.DataFrame:
    """Who gave these ratings (rows of the `annotations` table): per kind of rater, the batches, raters and ratings.
    A table written before `raters` was recorded reads as the declaration's default, expert."""
    if "raters" not in ratings.columns:
        ratings = ratings.with_columns(raters=pl.lit(BatchDeclaration().raters))
    return order_rating_sources(
        ratings.group_by("raters").agg(
            batches=pl.col("batch_id").n_unique(),
            annotators=pl.col("annotator").n_unique(),
            ratings=pl.len(),
        )
    )


def order_rating_sources(sources: pl.DataFrame) -> pl.DataFrame:
    """Rating sources in the order of `RATERS`, undeclared kinds last."""
    return sources.sort(
        pl.col("raters").replace_strict({kind: i for i, kind in enumerate(RATERS)}, default=len(RATERS))
    )


class CollectedAnnotations(NamedTuple):
    """What `write_annotations` wrote: the annotations table's rows and first rows, its ratings, images and
    annotators per (collection, scale), and the external images."""

    rows: int
    head: pl.DataFrame
    per_collection: pl.DataFrame
    external: pl.DataFrame


EXTERNAL_SCHEMA = {
    "collection": pl.String,
    "image_id": pl.String,
    "image_ref": pl.String,
    "first_batch_id": pl.String,
    "ratings": pl.UInt32,
}
PER_COLLECTION_SCHEMA = {
    "collection": pl.String,
    "scale": pl.String,
    "ratings": pl.UInt32,
    "images": pl.UInt32,
    "annotators": pl.UInt32,
}


def annotation_partition(imported_at: datetime, batch_id: str) -> str:
    """A batch's file in the annotations table, named so that the names sort in import order: import time (UTC, to
    the microsecond), then batch."""
    return f"{imported_at.astimezone(UTC):%Y%m%dT%H%M%S%fZ}-{batch_id}"


def write_annotations(
    store: Store, settings: Mapping[str, object] | None = None, preview_rows: int = 10
) -> CollectedAnnotations:
    """The accepted ratings of every imported batch, each with who its batch declared rated it (`raters`): one file
    per imported batch, a copy of the batch's own file, so that a new batch adds a file instead of rewriting every
    rating, and no rating passes through Python. The external images they registered come back as a frame.

    The files' names sort in import order (import time, then batch) and the importer writes a file's rows in source
    order, so the table read in name order is import order: import time, batch, source row, then the row's place in
    its file. Files of batches no longer imported are removed after the new ones are written. A batch file written
    before the importer stored `raters` is written again by DuckDB with its log row's."""
    stored = store.table_partitions(Table.ANNOTATION_BATCHES)
    imported = (
        batch_log(store)
        .filter(pl.col("status") == "imported", pl.col("batch_id").is_in(stored))
        .sort("imported_at", "batch_id")
    )
    wanted = {
        annotation_partition(at, batch): (batch, raters)
        for batch, raters, at in imported.select("batch_id", "raters", "imported_at").iter_rows()
    }
    present = store.table_partitions(Table.ANNOTATIONS)
    if not wanted:
        empty = pl.DataFrame(schema={**ACCEPTED_SCHEMA, "raters": pl.String})
        store.write_table(Table.ANNOTATIONS, empty)
        for partition in set(present) - {UNPARTITIONED}:
            store.remove_table_file(Table.ANNOTATIONS, partition)
        return CollectedAnnotations(
            0, empty, pl.DataFrame(schema=PER_COLLECTION_SCHEMA), pl.DataFrame(schema=EXTERNAL_SCHEMA)
        )
    with scratch(store, settings) as con:
        missing = {partition: batch for partition, batch in wanted.items() if partition not in present}
        _add_batch_files(store, con, missing)
        for partition in set(present) - wanted.keys():
            store.remove_table_file(Table.ANNOTATIONS, partition)
        files = [store.url(store.table_path(Table.ANNOTATIONS, partition)) for partition in sorted(wanted)]
        con.execute(render_sql("annotation/annotations", files=quote_list(files)))
        rows = con.sql("SELECT count(*) FROM annotation_ratings").fetchone()[0]
        head = con.sql(f"SELECT * EXCLUDE (file_row_number) FROM annotation_ratings LIMIT {preview_rows}").pl()
        per_collection = con.sql(sql_text("annotation/per_collection")).pl()
        external = con.sql(render_sql("annotation/external_images", generated=quote_literal(GENERATED))).pl()
    return CollectedAnnotations(
        rows,
        head,
        per_collection.cast(PER_COLLECTION_SCHEMA),  # type: ignore[arg-type]
        external.cast(EXTERNAL_SCHEMA),  # type: ignore[arg-type]
    )


def _add_batch_files(store: Store, con, missing: Mapping[str, tuple[str, str]]) -> None:
    """Each missing partition of the annotations table from its batch's file (partition: batch, raters): a copy, or
    for a file without `raters`, DuckDB's rewrite of it with them (one file scanned, so its order is kept)."""
    if not missing:
        return
    sources = {
        partition: store.table_path(Table.ANNOTATION_BATCHES, batch) for partition, (batch, _) in missing.items()
    }
    urls = quote_list(store.url(source) for source in sources.values())
    with_raters = {
        f for (f,) in con.sql(f"SELECT file_name FROM parquet_schema({urls}) WHERE name = 'raters'").fetchall()
    }
    for partition, source in sources.items():
        if store.url(source) in with_raters:
            store.copy_table_file(Table.ANNOTATIONS, source, partition)
            continue
        sql = render_sql(
            "annotation/batch_with_raters",
            file=quote_literal(store.url(source)),
            raters=quote_literal(missing[partition][1]),
        )
        store.write_table_file(Table.ANNOTATIONS, functools.partial(copy_to_parquet, con, sql), partition)


def reconcile_batches(store: Store) -> list[dict]:
    """Every imported batch: read = accepted + rejected + skipped, and its stored tables hold exactly that."""
    problems = []
    for row in batch_log(store).filter(pl.col("status") == "imported").iter_rows(named=True):
        batch = row["batch_id"]
        if row["rows_read"] != row["accepted"] + row["rejected"] + row["skipped"]:
            problems.append(
                {
                    "batch_id": batch,
                    "problem": "counts do not add up",
                    "rows_read": row["rows_read"],
                    "accepted": row["accepted"],
                    "rejected": row["rejected"],
                    "skipped": row["skipped"],
                }
            )
        stored = {
            "accepted": _rows(store, Table.ANNOTATION_BATCHES, batch),
            "rejected+skipped": _rows(store, Table.ANNOTATION_REJECTS, batch),
        }
        expected = {"accepted": row["accepted"], "rejected+skipped": row["rejected"] + row["skipped"]}
        for what, n in stored.items():
            if n != expected[what]:
                problems.append(
                    {
                        "batch_id": batch,
                        "problem": f"{what} rows stored differ from the log",
                        "logged": expected[what],
                        "stored": n,
                    }
                )
    return problems


def _rows(store: Store, table: str, partition: str) -> int | None:
    if partition not in store.table_partitions(table):
        return None
    return store.read_table(table, [partition]).height
