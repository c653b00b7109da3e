import dagster as dg
import polars as pl

from emonet_assets.defs.design.partitions import prompt_shard_partitions
from emonet_assets.defs.taxonomy.assets import emotion_rollups, read_taxonomy, taxonomy
from emonet_assets.lib.design.prompt_design import balance_table, build_design, cell_balance, shard_table
from emonet_assets.lib.shared.tables import Table
from emonet_assets.metadata import markdown_table
from emonet_assets.resources import ProfileResource, StorageResource


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            Table.PROMPT_DESIGN.key,
            group_name="design",
            kinds={"python", "parquet"},
            deps=[taxonomy, emotion_rollups],
            description="The balanced factorial design: one prompt per row with its cell (emotion x age x "
            "gender x ethnicity x robustness axes), template, cluster words, stable id, seed and shard.",
        ),
        dg.AssetSpec(
            Table.DESIGN_CELLS.key,
            group_name="design",
            kinds={"python", "parquet"},
            deps=[taxonomy],
            description="Every cell of the design grid with its planned prompt count (empty cells included), "
            "so balance is judged over the whole grid.",
        ),
    ],
)
def prompt_design(storage: StorageResource, profile: ProfileResource):
    tax = read_taxonomy(storage)
    spec = profile.design_spec()
    prompts, cells = build_design(spec, tax)
    balance = cell_balance(prompts, cells)
    marginals = {
        f: dict(prompts[f].cast(pl.String).value_counts(sort=True).iter_rows())
        for f in ("gender", "age", "ethnicity_group")
    }
    yield dg.MaterializeResult(
        asset_key=Table.PROMPT_DESIGN.key,
        metadata={
            **storage.write_table(Table.PROMPT_DESIGN, prompts, preview_drop=["cluster_words"]),
            **balance,
            "cell_balance": dg.MetadataValue.md(markdown_table(balance_table(prompts), limit=40)),
            "marginals": dg.MetadataValue.json(marginals),
            "shards": prompts["shard"].n_unique(),
            "design_version": spec.version,
            "taxonomy_version": tax.version,
        },
        data_version=dg.DataVersion(f"{spec.version}-{tax.version}"),
    )
    yield dg.MaterializeResult(
        asset_key=Table.DESIGN_CELLS.key,
        metadata={**storage.write_table(Table.DESIGN_CELLS, cells), "design_version": spec.version},
    )


@dg.asset(
    group_name="design",
    kinds={"python", "parquet"},
    deps=[Table.PROMPT_DESIGN.key],
    description="Fixed-size shards of the design; each is a partition key (`prompt_shards`) for generation.",
)
def prompt_shards(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    shards = shard_table(storage.store().read_table(Table.PROMPT_DESIGN))
    metadata = storage.write_table(Table.PROMPT_SHARDS, shards)
    wanted = shards["shard"].to_list()
    existing = set(context.instance.get_dynamic_partitions(prompt_shard_partitions.name))
    added = [k for k in wanted if k not in existing]
    stale = sorted(existing - set(wanted))
    if added:
        context.instance.add_dynamic_partitions(prompt_shard_partitions.name, added)
    for key in stale:
        context.instance.delete_dynamic_partition(prompt_shard_partitions.name, key)
    if stale:
        context.log.warning(f"removed {len(stale)} shard partitions no longer in the design: {stale[:10]}")
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "partitions_added": len(added),
            "partitions_removed": len(stale),
        }
    )
