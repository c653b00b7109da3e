import dagster as dg
import polars as pl

from emonet_assets.defs.design.assets import prompt_shards
from emonet_assets.defs.taxonomy.assets import read_taxonomy
from emonet_assets.lib.shared.catalog import run_check_sql
from emonet_assets.lib.shared.expectations import prompt_expectations, validate
from emonet_assets.lib.shared.tables import Table
from emonet_assets.metadata import suite_metadata
from emonet_assets.resources import ProfileResource, StorageResource


@dg.asset_check(
    asset=Table.PROMPT_DESIGN.key,
    blocking=True,
    additional_deps=[Table.TAXONOMY.key],
    description="Unique prompt ids, no empty or unfilled text, known emotions, a seed and shard each (GX suite).",
)
def prompts_are_valid(storage: StorageResource) -> dg.AssetCheckResult:
    prompts = storage.store().read_table(Table.PROMPT_DESIGN)
    emotion_ids = [e.id for e in read_taxonomy(storage).emotions]
    suite = validate(prompts.drop("cluster_words").to_pandas(), "prompt_design", prompt_expectations(emotion_ids))
    return dg.AssetCheckResult(passed=suite.success, metadata=suite_metadata(suite))


@dg.asset_check(
    asset=Table.PROMPT_DESIGN.key,
    blocking=True,
    additional_deps=[Table.DESIGN_CELLS.key],
    description="Every emotion x demographic cell count differs by at most one, and matches the plan (sql/checks).",
)
def cells_are_balanced(storage: StorageResource) -> dg.AssetCheckResult:
    store = storage.store()
    [row] = run_check_sql(
        "prompt_cell_balance",
        prompts=store.read_table(Table.PROMPT_DESIGN),
        cells=store.read_table(Table.DESIGN_CELLS),
    )
    passed = row["spread"] <= 1 and row["off_plan_cells"] == 0 and row["prompts_outside_grid"] == 0
    return dg.AssetCheckResult(
        passed=passed,
        metadata={k: (dg.MetadataValue.json(v) if isinstance(v, list) else v) for k, v in row.items()},
        description=None
        if passed
        else (
            f"cell counts range {row['min_per_cell']}..{row['max_per_cell']} (spread {row['spread']}), "
            f"{row['off_plan_cells']} cells off plan, {row['prompts_outside_grid']} prompts outside the grid"
        ),
    )


@dg.asset_check(
    asset=prompt_shards,
    blocking=True,
    additional_deps=[Table.PROMPT_DESIGN.key],
    description="Every shard is non-empty, contiguous, within the shard size and matches the design (sql/checks).",
)
def shards_are_non_empty(storage: StorageResource, profile: ProfileResource) -> dg.AssetCheckResult:
    store = storage.store()
    bad = run_check_sql(
        "prompt_shards_non_empty",
        prompts=store.read_table(Table.PROMPT_DESIGN),
        shards=store.read_table(Table.PROMPT_SHARDS),
        shard_size=pl.DataFrame({"n": [profile.design_spec().shard_size]}),
    )
    return dg.AssetCheckResult(
        passed=not bad,
        metadata={
            "bad_shards": len(bad),
            "examples": dg.MetadataValue.json([{k: str(v) for k, v in r.items()} for r in bad[:10]]),
        },
        description=None
        if not bad
        else f"{len(bad)} shard(s) empty, incomplete or oversized: {[r['shard'] for r in bad[:10]]}",
    )
