import dagster as dg

from emonet_assets.defs.taxonomy.assets import emotion_rollups, read_taxonomy, taxonomy
from emonet_assets.lib.shared.expectations import taxonomy_expectations, validate
from emonet_assets.lib.shared.tables import Table
from emonet_assets.lib.taxonomy.taxonomy import rollup_problems, taxonomy_problems
from emonet_assets.metadata import suite_metadata
from emonet_assets.resources import StorageResource


@dg.asset_check(
    asset=taxonomy,
    blocking=True,
    description="40 unique emotions, each in exactly one of 7 groups (GX suite).",
)
def taxonomy_is_complete(storage: StorageResource) -> dg.AssetCheckResult:
    table = storage.store().read_table(Table.TAXONOMY)
    suite = validate(
        table.drop("cluster", "aliases").to_pandas(),
        "taxonomy",
        taxonomy_expectations(sorted(set(table["group_id"].drop_nulls().to_list()))),
    )
    problems = taxonomy_problems(table)
    return dg.AssetCheckResult(
        passed=suite.success and not problems,
        metadata={**suite_metadata(suite), "problems": dg.MetadataValue.json(problems)},
        description="; ".join(problems) or None,
    )


@dg.asset_check(
    asset=emotion_rollups,
    additional_deps=[taxonomy],
    blocking=True,
    description="Every rollup places each of the 40 emotions in exactly one level and names no unknown emotion.",
)
def rollups_are_complete(storage: StorageResource) -> dg.AssetCheckResult:
    problems = rollup_problems(storage.store().read_table(Table.EMOTION_ROLLUPS), read_taxonomy(storage))
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"problems": dg.MetadataValue.json(problems), "problem_count": len(problems)},
        description=f"{len(problems)} problem(s): " + "; ".join(problems[:10]) if problems else None,
    )
