from collections import Counter

import dagster as dg
import polars as pl

from emonet_assets.defs.generation.assets import generated_images, image_qc
from emonet_assets.lib.generation.shard_generation import describe_manifest_problems, missing_images
from emonet_assets.lib.shared.catalog import run_check_sql
from emonet_assets.lib.shared.tables import Table
from emonet_assets.resources import ProfileResource, StorageResource


@dg.asset_check(
    asset=generated_images,
    blocking=True,
    additional_deps=[Table.PROMPT_DESIGN.key],
    description="Every prompt of each generated shard has an image file, with one manifest row per prompt and "
    "model, and no row outside its shard (sql/checks/generation_manifest.sql).",
)
def manifest_matches_shards(storage: StorageResource) -> dg.AssetCheckResult:
    store = storage.store()
    manifest = store.read_table(Table.GENERATED_IMAGES)
    problems = run_check_sql("generation_manifest", prompts=store.read_table(Table.PROMPT_DESIGN), manifest=manifest)
    missing = missing_images(store, manifest)
    problems += [{"problem": "image file missing", **row} for row in missing.iter_rows(named=True)]
    counts = Counter(p["problem"] for p in problems)
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={
            "manifest_rows": manifest.height,
            "problems": len(problems),
            "by_problem": dg.MetadataValue.json(dict(counts)),
            "examples": dg.MetadataValue.json([{k: str(v) for k, v in p.items()} for p in problems[:10]]),
        },
        description=describe_manifest_problems(problems) or None,
    )


@dg.asset_check(
    asset=image_qc,
    blocking=True,
    description="The share of quarantined images stays within the profile's limit (qc.max_quarantine_share).",
)
def quarantine_within_limit(storage: StorageResource, profile: ProfileResource) -> dg.AssetCheckResult:
    qc = storage.store().read_table(Table.IMAGE_QC)
    share = float((~qc["passed"]).mean()) if qc.height else 0.0
    limit = profile.qc.max_quarantine_share
    examples = qc.filter(~pl.col("passed")).head(10).select("image_sha256", "reasons").to_dicts()
    return dg.AssetCheckResult(
        passed=share <= limit,
        metadata={
            "quarantined_share": round(share, 4),
            "limit": limit,
            "quarantined": int((~qc["passed"]).sum()),
            "examples": dg.MetadataValue.json(examples),
        },
        description=None if share <= limit else f"{share:.1%} of images quarantined, above the {limit:.1%} limit",
    )
