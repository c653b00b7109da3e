import dagster as dg

from emonet_assets.defs.taxonomy.assets import read_taxonomy
from emonet_assets.lib.annotation.annotation_batches import reconcile_batches
from emonet_assets.lib.annotation.rating_checks import check_ratings
from emonet_assets.lib.shared.tables import Table
from emonet_assets.metadata import suite_metadata
from emonet_assets.resources import ProfileResource, StorageResource


@dg.asset_check(
    asset=Table.ANNOTATIONS.key,
    additional_deps=[Table.TAXONOMY.key],
    blocking=True,
    description="Accepted ratings: no missing fields, values on their scale (binary 0/1, intensity 0–7), known "
    "emotions (GX suite, batch by batch), one rating per (collection, image, annotator, emotion) across all "
    "batches (SQL).",
)
def ratings_meet_expectations(storage: StorageResource, profile: ProfileResource) -> dg.AssetCheckResult:
    emotion_ids = [e.id for e in read_taxonomy(storage).emotions]
    settings, workers = profile.annotation.duckdb_settings(), profile.annotation.ratings_check_workers
    rows, suite = check_ratings(storage.store(), Table.ANNOTATIONS, emotion_ids, settings, workers)
    return dg.AssetCheckResult(passed=suite.success, metadata={"ratings": rows, **suite_metadata(suite)})


@dg.asset_check(
    asset=Table.ANNOTATIONS.key,
    additional_deps=[Table.ANNOTATION_BATCH_LOG.key, Table.ANNOTATION_BATCHES.key, Table.ANNOTATION_REJECTS.key],
    blocking=True,
    description="For every imported batch, rows read = accepted + rejected + skipped, and the stored accepted "
    "and reject tables hold exactly the logged counts: nothing accepted was lost.",
)
def batches_reconcile(storage: StorageResource) -> dg.AssetCheckResult:
    problems = reconcile_batches(storage.store())
    batches = sorted({p["batch_id"][:12] for p in problems})
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={
            "problems": len(problems),
            "examples": dg.MetadataValue.json([{k: str(v) for k, v in p.items()} for p in problems[:10]]),
        },
        description=None if not problems else f"{len(problems)} problems in batches {', '.join(batches)}",
    )
