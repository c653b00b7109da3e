import dagster as dg

from emonet_assets.defs.taxonomy.assets import read_taxonomy
from emonet_assets.lib.annotation.annotation_batches import reconcile_batches
from emonet_assets.lib.shared.expectations import rating_expectations, validate
from emonet_assets.lib.shared.tables import Table
from emonet_assets.metadata import suite_metadata
from emonet_assets.resources import StorageResource


@dg.asset_check(
    asset=Table.ANNOTATIONS.key,
    additional_deps=[Table.TAXONOMY.key],
    blocking=True,
    description="Accepted ratings: no missing fields, values on their scale (binary 0/1, intensity 0–7), known "
    "emotions, one rating per (collection, image, annotator, emotion) across all batches (GX suite).",
)
def ratings_meet_expectations(storage: StorageResource) -> dg.AssetCheckResult:
    ratings = storage.store().read_table(Table.ANNOTATIONS)
    emotion_ids = [e.id for e in read_taxonomy(storage).emotions]
    suite = validate(ratings.drop("imported_at").to_pandas(), "annotations", rating_expectations(emotion_ids))
    return dg.AssetCheckResult(passed=suite.success, metadata={"ratings": ratings.height, **suite_metadata(suite)})


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
