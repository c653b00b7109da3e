import dagster as dg
import polars as pl

from emonet_assets.lib.shared.tables import Table
from emonet_assets.lib.taxonomy.taxonomy import Taxonomy, builtin_rollups, load_rollup_file, load_taxonomy, rollup_path
from emonet_assets.resources import ProfileResource, StorageResource


@dg.asset(
    group_name="taxonomy",
    kinds={"python", "parquet"},
    description="The 40 EmoNet-Face emotions with stable ids, their 7 groups, valence, word clusters and "
    "the aliases importers resolve label spellings with (from the release's guide.json, CC BY 4.0, LAION).",
)
def taxonomy(storage: StorageResource) -> dg.MaterializeResult:
    tax = load_taxonomy()
    return dg.MaterializeResult(
        metadata={
            **storage.write_table(Table.TAXONOMY, tax.table()),
            "taxonomy_version": tax.version,
            "groups": len(tax.groups),
            "aliases": len(tax.aliases),
            "source": tax.source,
        },
        data_version=dg.DataVersion(tax.version),
    )


def read_taxonomy(storage: StorageResource) -> Taxonomy:
    return Taxonomy.from_table(storage.store().read_table(Table.TAXONOMY))


@dg.asset(
    group_name="taxonomy",
    kinds={"python", "parquet"},
    deps=[taxonomy],
    description="Emotion -> group (7) -> valence rollups plus the profile's user mapping files, one row "
    "per (rollup, level, emotion); unknown labels are kept (emotion_id null) for the completeness check.",
)
def emotion_rollups(storage: StorageResource, profile: ProfileResource) -> dg.MaterializeResult:
    tax = read_taxonomy(storage)
    frames = [builtin_rollups(tax)]
    frames += [load_rollup_file(rollup_path(entry), tax) for entry in profile.rollups]
    table = pl.concat(frames)
    levels = table.group_by("rollup", maintain_order=True).agg(pl.col("level").n_unique().alias("levels"))
    return dg.MaterializeResult(
        metadata={
            **storage.write_table(Table.EMOTION_ROLLUPS, table),
            "rollups": dg.MetadataValue.md("\n".join(f"- **{r}**: {n} levels" for r, n in levels.iter_rows())),
            "taxonomy_version": tax.version,
        }
    )
