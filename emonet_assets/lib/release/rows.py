"""The release's rows: one per split image with its labels and lineage, refused when the data is incomplete.

DuckDB assembles them from the tables' Parquet files, a chunk of images at a time in split then sha256 order, so a
release of a million images (152M ratings) never holds a whole table in Python; Python sees one light row per image
for the card and the license check, and the full rows a batch at a time as they are packed into shards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from emonet_assets.lib.annotation.annotation_batches import order_rating_sources
from emonet_assets.lib.annotation.landing import BatchDeclaration
from emonet_assets.lib.release.licenses import permits
from emonet_assets.lib.release.schema import CONSENSUS_FEATURES, FEATURES, RATING_FEATURES
from emonet_assets.lib.shared.catalog import quote_literal, render_sql
from emonet_assets.lib.shared.iteration import read_ahead
from emonet_assets.lib.shared.rules import GENERATED, GENERATED_INTENSITY_SQL
from emonet_assets.lib.shared.storage import Store
from emonet_assets.lib.shared.tables import RELEASE_ROW_TABLES

# Images DuckDB assembles at once: about 160 ratings each, so a chunk's lists stay far under any memory limit.
CHUNK_IMAGES = 8192
# The rating columns `release/staged_ratings.sql` stages as codes into `release_rating_values`.
CODED_RATING_COLUMNS = ("annotator", "emotion_id", "scale", "batch_id")
# The columns of a release row that the card, the provenance and the license check count, one row per image.
SUMMARY_COLUMNS = (
    "image_sha256",
    "split",
    "generation_model",
    "model_fingerprint",
    "license",
    "scheduler",
    "steps",
    "width",
    "height",
    "age",
    "gender",
    "ethnicity_group",
    "design_version",
    "taxonomy_version",
    "mean_n_ratings",
)


class ReleaseRefused(ValueError):
    """The data is not complete enough to publish; the message names counts and examples."""


@dataclass(frozen=True)
class ReleaseRows:
    """The release's rows in DuckDB (`con` holds them), with what the card and the checks need in Python."""

    con: duckdb.DuckDBPyConnection
    images: pl.DataFrame  # SUMMARY_COLUMNS, one row per released image, in split then sha256 order
    annotators: int  # distinct annotators among the released images' ratings
    batches: int  # distinct annotation batches among them
    rating_sources: list[dict]  # annotation_batches.rating_sources rows over the released images' ratings
    emotions: pa.Array  # the release's emotion ids, by their place in its list (the staged consensus' `ord`)
    rating_values: dict[str, pa.Array]  # each coded rating column's values, by code (`release_rating_values`)

    def split_rows(self, split: str, batch_rows: int, chunk_images: int = CHUNK_IMAGES) -> Iterator[pa.RecordBatch]:
        """One split's full rows without the image bytes, in sha256 order, `batch_rows` at a time. DuckDB sorts
        `chunk_images` images' consensus and ratings at a time (an ordered `list()` aggregate is several times
        slower) and Arrow cuts the sorted rows into each image's lists. An image's place in `images` is its
        `image_ord`, the integer the staged tables are sorted and filtered on."""
        ords = np.flatnonzero((self.images["split"] == split).to_numpy())
        chunks = (ords[start : start + chunk_images] for start in range(0, ords.size, chunk_images))
        for table in read_ahead(self._chunk_rows(int(chunk[0]), int(chunk[-1])) for chunk in chunks):
            yield from table.to_batches(batch_rows)

    def _chunk_rows(self, first: int, last: int) -> pa.Table:
        where = f"WHERE image_ord BETWEEN {first} AND {last}"
        images = self.con.sql(f"SELECT * FROM release_images {where} ORDER BY image_ord").to_arrow_table()

        def per_image(
            relation: str, columns: dict[str, str], sort: str, values: Mapping[str, pa.Array], none_is_null=False
        ) -> pa.ListArray:
            """The relation's rows of each image of the chunk, sorted, as one list per image (of the column, or of
            structs of the columns: name -> staged column), cut by the count of each image's rows; a coded column
            becomes its `values`."""
            selected = ", ".join(f"{staged} AS {name}" for name, staged in columns.items())
            flat = self.con.sql(
                f"SELECT image_ord, {selected} FROM {relation} {where} ORDER BY image_ord, {sort}"
            ).to_arrow_table()
            ords = flat.column("image_ord").to_numpy() - first
            counts = np.bincount(ords, minlength=last - first + 1)
            arrays = {name: flat.column(name).combine_chunks() for name in columns}
            return _per_image(
                counts,
                {name: values[name].take(a) if name in values else a for name, a in arrays.items()},
                none_is_null,
            )

        consensus_columns = {name: "ord" if name == "emotion_id" else name for name in CONSENSUS_FEATURES}
        consensus = per_image("release_consensus", consensus_columns, "ord", {"emotion_id": self.emotions}, True)
        columns = {
            **{name: images.column(name) for name in images.column_names},
            # The same lists' medians: one sorted read of the chunk's consensus, not two.
            "intensity_median": pa.ListArray.from_arrays(
                consensus.offsets, consensus.values.field("median_rating"), mask=consensus.is_null()
            ),
            "consensus": consensus,
            "ratings": per_image(
                "release_ratings",
                {name: name for name in RATING_FEATURES},
                "emotion_id, annotator, scale, batch_id, source_row",
                self.rating_values,
            ),
            "annotation_batch_ids": per_image(
                "(SELECT DISTINCT image_ord, batch_id FROM release_ratings)",
                {"batch_id": "batch_id"},
                "batch_id",
                self.rating_values,
            ),
        }
        return pa.table({name: columns[name] for name in FEATURES if name != "image"})


def _per_image(counts: np.ndarray, columns: dict[str, pa.Array], none_is_null: bool) -> pa.ListArray:
    """The columns' rows cut into consecutive lists of `counts` rows: of the one column, or of structs of the
    columns; a list of no rows is empty, or null when `none_is_null`."""
    lengths = counts.astype(np.int32)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    if len(columns) == 1:
        (values,) = columns.values()
    else:
        values = pa.StructArray.from_arrays(list(columns.values()), names=list(columns))
    return pa.ListArray.from_arrays(offsets, values, mask=pa.array(lengths == 0) if none_is_null else None)


def _examples(frame: pl.DataFrame, describe: Callable[[dict], str], limit: int = 3) -> str:
    return "; ".join(describe(row) for row in frame.head(limit).iter_rows(named=True))


def release_rows(
    con: duckdb.DuckDBPyConnection, store: Store, emotion_ids: list[str], max_failed_qc_share: float
) -> ReleaseRows:
    """Every split image's release row, in DuckDB on `con` (a `catalog.scratch` connection).

    Refuses a dataset that is not complete: too many generated images failing QC, split images without
    a generation record, a prompt, a QC pass or intensity consensus for every emotion.
    """
    unwritten = [str(table) for table in RELEASE_ROW_TABLES if not store.has_table(table)]
    if unwritten:
        raise ReleaseRefused(f"tables not written under {store.root}: {', '.join(unwritten)}")
    globs = {str(table): quote_literal(store.table_glob(table)) for table in RELEASE_ROW_TABLES}
    con.execute(render_sql("release/inputs", **globs))
    _refuse_failed_qc(con, max_failed_qc_share)
    con.register("release_emotions", pa.table({"emotion_id": emotion_ids, "ord": list(range(len(emotion_ids)))}))
    con.execute(render_sql("release/images", collection=quote_literal(GENERATED)))
    images = con.sql(
        f"SELECT {', '.join(SUMMARY_COLUMNS)}, prompt_id IS NULL AS no_manifest, prompt IS NULL AS no_prompt, "
        "coalesce(qc_passed, false) AS qc_passed, n_labelled FROM release_images ORDER BY split, image_sha256"
    ).pl()
    if images.is_empty():
        raise ReleaseRefused("the splits table has no images: nothing to release")
    _refuse_missing(images.filter("no_manifest"), "have no row in the generation manifest")
    _refuse_missing(images.filter("no_prompt"), "have no prompt in prompt_design")
    _refuse_missing(images.filter(~pl.col("qc_passed")), "did not pass QC")
    _refuse_incomplete(con, images, emotion_ids)
    con.execute(render_sql("release/staged_ratings", collection=quote_literal(GENERATED)))
    annotators, batches = con.sql(
        "SELECT count(DISTINCT annotator), count(DISTINCT batch_id) FROM release_ratings"
    ).fetchone()
    has_raters = "raters" in con.sql("SELECT * FROM annotations LIMIT 0").columns
    sources = con.sql(
        render_sql(
            "release/rating_sources", raters="raters" if has_raters else quote_literal(BatchDeclaration().raters)
        )
    ).pl()
    return ReleaseRows(
        con=con,
        images=images.select(SUMMARY_COLUMNS),
        annotators=annotators,
        batches=batches,
        rating_sources=order_rating_sources(sources).to_dicts(),
        emotions=pa.array(emotion_ids, pa.string()),
        rating_values=_rating_values(con),
    )


def _rating_values(con: duckdb.DuckDBPyConnection) -> dict[str, pa.Array]:
    """Each coded column's values by code; empty where no rating has one, so every coded column decodes."""
    found = dict(
        con.sql("SELECT column_name, list(value ORDER BY code) FROM release_rating_values GROUP BY ALL").fetchall()
    )
    return {column: pa.array(found.get(column, []), pa.string()) for column in CODED_RATING_COLUMNS}


def _refuse_failed_qc(con: duckdb.DuckDBPyConnection, max_failed_qc_share: float) -> None:
    failed, total = con.sql("SELECT count(*) FILTER (WHERE NOT passed), count(*) FROM image_qc").fetchone()
    share = failed / total if total else 0.0
    if share > max_failed_qc_share:
        first = con.sql(
            "SELECT image_sha256, reasons FROM image_qc WHERE NOT passed "
            "ORDER BY table_partition, file_row_number LIMIT 3"
        ).pl()
        raise ReleaseRefused(
            f"{failed} of {total} generated images ({share:.1%}) failed QC, above the profile's "
            f"release.max_failed_qc_share {max_failed_qc_share:.1%}; e.g. "
            + _examples(first, lambda r: f"{r['image_sha256'][:12]} ({', '.join(r['reasons'] or []) or 'failed'})")
        )


def _refuse_missing(bad: pl.DataFrame, reason: str) -> None:
    if bad.height:
        raise ReleaseRefused(
            f"{bad.height} split images {reason}; e.g. "
            + _examples(bad, lambda r: f"{r['image_sha256'][:12]} ({r['split']})")
        )


def _refuse_incomplete(con: duckdb.DuckDBPyConnection, images: pl.DataFrame, emotion_ids: list[str]) -> None:
    incomplete = images.filter(pl.col("n_labelled") < len(emotion_ids))
    if incomplete.is_empty():
        return
    first = incomplete.head(3)
    con.register("release_incomplete", first.select("image_sha256").to_arrow())
    labelled = dict(
        con.sql(
            "SELECT image_id, list(DISTINCT emotion_id) FROM consensus_labels "
            f"WHERE {GENERATED_INTENSITY_SQL} "
            "AND image_id IN (SELECT image_sha256 FROM release_incomplete) GROUP BY image_id"
        ).fetchall()
    )

    def describe(row: dict) -> str:
        missing = [e for e in emotion_ids if e not in set(labelled.get(row["image_sha256"]) or [])]
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        return f"{row['image_sha256'][:12]} ({row['split']}): {len(missing)} missing ({shown})"

    raise ReleaseRefused(
        f"{incomplete.height} of {images.height} split images lack intensity consensus for some of the "
        f"{len(emotion_ids)} emotions; e.g. " + _examples(first, describe)
    )


def license_conflicts(images: pl.DataFrame, release_license: str) -> pl.DataFrame:
    """Generation models whose license forbids the release license, with how many released images each has."""
    models = images.group_by("generation_model", "model_fingerprint", "license").agg(images=pl.len())
    allowed = [permits(license_id, release_license) for license_id in models["license"].to_list()]
    return models.filter(~pl.Series(allowed, dtype=pl.Boolean)).sort("generation_model", "model_fingerprint")
