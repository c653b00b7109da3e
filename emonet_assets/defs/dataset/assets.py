import dagster as dg
import polars as pl

from emonet_assets.lib.dataset.splits import assign_splits, read_rated_images
from emonet_assets.lib.shared.catalog import scratch
from emonet_assets.lib.shared.tables import Table
from emonet_assets.metadata import markdown_table
from emonet_assets.resources import ProfileResource, StorageResource


def read_splits(storage: StorageResource) -> pl.DataFrame:
    return storage.store().read_table(Table.SPLITS)


@dg.asset(
    group_name="dataset",
    kinds={"polars", "parquet"},
    deps=[Table.CONSENSUS_LABELS.key, Table.IMAGE_QC.key, Table.PROMPT_DESIGN.key, Table.GENERATED_IMAGES.key],
    description="Train / validation / test per rated image: a prompt's images and near-duplicates (phash) stay "
    "in one split, stratified over emotion x analysis group, deterministic under the profile's seed.",
)
def splits(context: dg.AssetExecutionContext, storage: StorageResource, profile: ProfileResource):
    store = storage.store()
    settings = profile.dataset
    with scratch(store, profile.annotation.duckdb_settings()) as con:
        images = read_rated_images(con, store)
    if images.is_empty():
        raise dg.Failure(description="no generated image has passed QC and has intensity consensus labels yet")
    result = assign_splits(
        images,
        ratios=settings.ratios,
        seed=settings.seed,
        near_duplicate_distance=settings.near_duplicate_distance,
        min_test_per_cell=settings.min_test_per_cell,
    )
    if result.warnings:
        context.log.warning(result.warning_line())
    return dg.MaterializeResult(
        metadata={
            **storage.write_table(Table.SPLITS, result.assignments),
            "summary": dg.MetadataValue.md(markdown_table(result.summary)),
            "groups": result.assignments["group_id"].n_unique(),
            "small_cell_warnings": len(result.warnings),
            "warnings": dg.MetadataValue.md("\n".join(f"- {w}" for w in result.warnings) or "none"),
        }
    )
