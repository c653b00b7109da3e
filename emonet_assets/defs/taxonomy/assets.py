from pathlib import Path

import dagster as dg
import polars as pl

from emonet_assets.lib.taxonomy import Taxonomy, builtin_rollups, load_rollup_file, load_taxonomy
from emonet_assets.metadata import table_metadata
from emonet_assets.resources import CatalogResource, ProfileResource, StorageResource

REPO_ROOT = Path(__file__).resolve().parents[3]


@dg.asset(
    group_name="taxonomy",
    kinds={"python", "parquet"},
    pool="catalog",
    description="The 40 EmoNet-Face emotions with stable ids, their 7 groups, valence, word clusters and "
    "the aliases importers resolve label spellings with (from the release's guide.json, CC BY 4.0, LAION).",
)
def taxonomy(storage: StorageResource, catalog: CatalogResource) -> dg.MaterializeResult:
    tax = load_taxonomy()
    table = tax.table()
    store = storage.store()
    path = store.write_table("taxonomy", table)
    catalog.refresh(store, ["taxonomy"])
    return dg.MaterializeResult(
        metadata={
            **table_metadata(table, store.url(path)),
            "taxonomy_version": tax.version,
            "groups": len(tax.groups),
            "aliases": len(tax.aliases),
            "source": tax.source,
        },
        data_version=dg.DataVersion(tax.version),
    )


def read_taxonomy(storage: StorageResource) -> Taxonomy:
    return Taxonomy.from_table(storage.store().read_table("taxonomy"))


@dg.asset(
    group_name="taxonomy",
    kinds={"python", "parquet"},
    deps=[taxonomy],
    pool="catalog",
    description="Emotion -> group (7) -> valence rollups plus the profile's user mapping files, one row "
    "per (rollup, level, emotion); unknown labels are kept (emotion_id null) for the completeness check.",
)
def emotion_rollups(
    storage: StorageResource, catalog: CatalogResource, profile: ProfileResource
) -> dg.MaterializeResult:
    tax = read_taxonomy(storage)
    frames = [builtin_rollups(tax)]
    frames += [load_rollup_file(REPO_ROOT / f if not Path(f).is_absolute() else f, tax) for f in profile.rollups]
    table = pl.concat(frames)
    store = storage.store()
    path = store.write_table("emotion_rollups", table)
    catalog.refresh(store, ["emotion_rollups"])
    levels = table.group_by("rollup", maintain_order=True).agg(pl.col("level").n_unique().alias("levels"))
    return dg.MaterializeResult(
        metadata={
            **table_metadata(table, store.url(path)),
            "rollups": dg.MetadataValue.md("\n".join(f"- **{r}**: {n} levels" for r, n in levels.iter_rows())),
            "taxonomy_version": tax.version,
        }
    )
