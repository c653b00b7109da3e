import dagster as dg
import polars as pl

from emonet_assets.automation import refresh_on_new_annotations
from emonet_assets.defs.annotation.partitions import annotation_batch_partitions
from emonet_assets.defs.taxonomy.assets import read_taxonomy
from emonet_assets.lib.annotation_batches import (
    ANNOTATIONS_TABLE,
    EXTERNAL_IMAGES_TABLE,
    EXTRAS_TABLE,
    LOG_TABLE,
    REJECTS_TABLE,
    batch_log,
    collect_annotations,
    import_landed_batch,
)
from emonet_assets.metadata import markdown_table, table_metadata
from emonet_assets.resources import CatalogResource, ProfileResource, StorageResource


@dg.asset(
    group_name="annotation",
    kinds={"polars", "parquet"},
    deps=["taxonomy", "prompt_design", "image_qc"],
    partitions_def=annotation_batch_partitions,
    pool="annotation_import",
    description="One expert annotation file from the landing zone (partition = the file's sha256): accepted "
    "ratings with batch id, source file and source row; rejects and skips with their reasons; `Extra "
    "Dimensions` values in a side table. Read = accepted + rejected + skipped, always.",
)
def annotation_batches(
    context: dg.AssetExecutionContext, storage: StorageResource, profile: ProfileResource
) -> dg.MaterializeResult:
    store = storage.store()
    settings = profile.annotation
    landed = import_landed_batch(
        store,
        settings.landing,
        context.partition_key,
        read_taxonomy(storage),
        max_bytes=int(settings.max_file_mb * 1024 * 1024),
    )
    if landed.error:
        raise dg.Failure(
            description=f"file rejected: {landed.error}", metadata={"source_file": landed.log["source_file"]}
        )
    result, log = landed.result, landed.log
    return dg.MaterializeResult(
        metadata={
            **table_metadata(result.accepted, store.url(store.table_path("annotation_batches", context.partition_key))),
            "source_file": dg.MetadataValue.path(store.url(log["source_file"])),
            "format": log["format"],
            "scale": log["scale"],
            "collection": log["collection"],
            **{name: log[name] for name in ("rows_read", "accepted", "rejected", "skipped", "extras")},
            "reasons": dg.MetadataValue.md(markdown_table(result.reason_counts(), limit=20)),
            "rejects_preview": dg.MetadataValue.md(
                markdown_table(result.rejects.select("source_ref", "reason", "detail"), limit=10)
            ),
            "notes": dg.MetadataValue.json(log["notes"]),
        }
    )


@dg.asset(
    group_name="annotation",
    kinds={"duckdb", "parquet"},
    deps=[annotation_batches],
    pool="catalog",
    automation_condition=refresh_on_new_annotations,
    description="Accepted ratings of every imported batch in one table (the dbt source), and the external "
    "images those batches registered without pixels.",
)
def annotations(storage: StorageResource, catalog: CatalogResource) -> dg.MaterializeResult:
    store = storage.store()
    ratings, external = collect_annotations(store)
    path = store.write_table(ANNOTATIONS_TABLE, ratings)
    store.write_table(EXTERNAL_IMAGES_TABLE, external)
    catalog.refresh(store, [ANNOTATIONS_TABLE, EXTERNAL_IMAGES_TABLE, REJECTS_TABLE, EXTRAS_TABLE, LOG_TABLE])
    log = batch_log(store).select(
        "batch_id", "source_file", "status", "collection", "scale", "rows_read", "accepted", "rejected", "skipped"
    )
    per_collection = (
        ratings.group_by("collection", "scale")
        .agg(
            pl.len().alias("ratings"),
            pl.col("image_id").n_unique().alias("images"),
            pl.col("annotator").n_unique().alias("annotators"),
        )
        .sort("collection", "scale")
    )
    return dg.MaterializeResult(
        metadata={
            **table_metadata(ratings.drop("imported_at"), store.url(path)),
            "batches_imported": int((log["status"] == "imported").sum()),
            "batches_rejected": int((log["status"] == "rejected").sum()),
            "external_images": external.height,
            "by_collection": dg.MetadataValue.md(markdown_table(per_collection, limit=50)),
            "batches": dg.MetadataValue.md(markdown_table(log.with_columns(pl.col("batch_id").str.head(12)), limit=50)),
        }
    )
