import dagster as dg
import polars as pl

from emonet_assets.defs.annotation.partitions import annotation_batch_partitions
from emonet_assets.defs.automation.conditions import refresh_on_new_annotations
from emonet_assets.defs.taxonomy.assets import read_taxonomy
from emonet_assets.lib.annotation.annotation_batches import (
    LOG_SCHEMA,
    batch_log,
    import_landed_batch,
    rejects_and_skips,
    write_annotations,
)
from emonet_assets.lib.shared.tables import Table
from emonet_assets.metadata import markdown_table, table_metadata
from emonet_assets.resources import ProfileResource, StorageResource

# What an import reads: the taxonomy resolves labels, the design and manifest resolve image references; QC first.
_IMPORT_DEPS = [
    Table.TAXONOMY.key,
    Table.PROMPT_DESIGN.key,
    Table.IMAGE_QC.key,
    dg.AssetDep(Table.GENERATED_IMAGES.key, partition_mapping=dg.AllPartitionMapping()),
]


def _batch_spec(table: Table, description: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        table.key,
        group_name="annotation",
        kinds={"polars", "parquet"},
        deps=_IMPORT_DEPS,
        partitions_def=annotation_batch_partitions,
        description=description,
    )


@dg.multi_asset(
    specs=[
        _batch_spec(
            Table.ANNOTATION_BATCHES,
            "One expert annotation file from the landing zone (partition = the file's sha256): accepted ratings "
            "with batch id, source file and source row. Read = accepted + rejected + skipped, always.",
        ),
        _batch_spec(
            Table.ANNOTATION_REJECTS,
            "The rows of a batch that did not land, each with `outcome` (rejected or skipped), reason and detail.",
        ),
        _batch_spec(Table.ANNOTATION_EXTRAS, "A batch's `Extra Dimensions` values, beside its ratings."),
        _batch_spec(
            Table.ANNOTATION_BATCH_LOG,
            "One row per landed file: format, scale, collection, raters, status and the counts that must add "
            "up; a file rejected whole leaves only this row, with the reason.",
        ),
    ],
    pool="annotation_import",
)
def annotation_batches(context: dg.AssetExecutionContext, storage: StorageResource, profile: ProfileResource):
    store = storage.store()
    settings = profile.annotation
    batch = context.partition_key
    landed = import_landed_batch(
        store,
        settings.landing,
        batch,
        read_taxonomy(storage),
        max_bytes=int(settings.max_file_mb * 1024 * 1024),
        duckdb_settings=settings.duckdb_settings(),
    )
    if landed.error:
        raise dg.Failure(
            description=f"file rejected: {landed.error}", metadata={"source_file": landed.log["source_file"]}
        )
    result, log = landed.result, landed.log

    def written(table: Table, frame: pl.DataFrame) -> dict:
        return table_metadata(frame, store.url(store.table_path(table, batch)))

    yield dg.MaterializeResult(
        asset_key=Table.ANNOTATION_BATCHES.key,
        metadata={
            **written(Table.ANNOTATION_BATCHES, result.accepted),
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
        },
    )
    yield dg.MaterializeResult(
        asset_key=Table.ANNOTATION_REJECTS.key, metadata=written(Table.ANNOTATION_REJECTS, rejects_and_skips(result))
    )
    yield dg.MaterializeResult(
        asset_key=Table.ANNOTATION_EXTRAS.key, metadata=written(Table.ANNOTATION_EXTRAS, result.extras)
    )
    yield dg.MaterializeResult(
        asset_key=Table.ANNOTATION_BATCH_LOG.key,
        metadata=written(Table.ANNOTATION_BATCH_LOG, pl.DataFrame([log], schema=LOG_SCHEMA)),
    )


def _collected_spec(table: Table, description: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        table.key,
        group_name="annotation",
        kinds={"polars", "parquet"},
        deps=[Table.ANNOTATION_BATCHES.key, Table.ANNOTATION_BATCH_LOG.key],
        automation_condition=refresh_on_new_annotations,
        description=description,
    )


@dg.multi_asset(
    specs=[
        _collected_spec(
            Table.ANNOTATIONS,
            "Accepted ratings of every imported batch in one table (the dbt source), each with who its batch "
            "declared rated it (`raters`): a file per batch, in import order, so a new batch adds one file.",
        ),
        _collected_spec(
            Table.EXTERNAL_IMAGES,
            "The external images (not generated here) the imported batches registered without pixels: "
            "collection, image id, the reference the file gave, the batch that first named it.",
        ),
    ],
)
def annotations(storage: StorageResource, profile: ProfileResource):
    store = storage.store()
    collected = write_annotations(store, profile.annotation.duckdb_settings())
    log = batch_log(store).select(
        "batch_id", "source_file", "status", "collection", "scale", "rows_read", "accepted", "rejected", "skipped"
    )
    external = collected.external
    yield dg.MaterializeResult(
        asset_key=Table.ANNOTATIONS.key,
        metadata={
            **table_metadata(
                collected.head, store.table_glob(Table.ANNOTATIONS), preview_drop=["imported_at"], rows=collected.rows
            ),
            "batches_imported": int((log["status"] == "imported").sum()),
            "batches_rejected": int((log["status"] == "rejected").sum()),
            "external_images": external.height,
            "by_collection": dg.MetadataValue.md(markdown_table(collected.per_collection, limit=50)),
            "batches": dg.MetadataValue.md(markdown_table(log.with_columns(pl.col("batch_id").str.head(12)), limit=50)),
        },
    )
    yield dg.MaterializeResult(
        asset_key=Table.EXTERNAL_IMAGES.key, metadata=storage.write_table(Table.EXTERNAL_IMAGES, external)
    )
