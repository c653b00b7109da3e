import json

import dagster as dg

from emonet_assets.defs.annotation.assets import annotation_batches
from emonet_assets.defs.annotation.partitions import annotation_batch_partitions
from emonet_assets.lib.annotation.landing import new_landed_files
from emonet_assets.resources import ProfileResource, StorageResource


@dg.sensor(
    asset_selection=[annotation_batches],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches the annotation landing zone; each file with new content becomes an annotation_batches "
    "partition keyed by its sha256 and is imported. The same content landing twice is one batch.",
)
def annotation_landing_sensor(
    context: dg.SensorEvaluationContext, storage: StorageResource, profile: ProfileResource
) -> dg.SensorResult:
    store = storage.store()
    seen = json.loads(context.cursor) if context.cursor else {}
    known = set(context.instance.get_dynamic_partitions(annotation_batch_partitions.name))
    cursor, landed = new_landed_files(store, profile.annotation.landing, seen, known)
    for sha, path in landed:
        context.log.info(f"new annotation batch {sha[:12]} from {path}")
    new = [sha for sha, _ in landed]
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=sha, run_key=sha) for sha in new],
        dynamic_partitions_requests=[annotation_batch_partitions.build_add_request(new)] if new else [],
        cursor=json.dumps(cursor, sort_keys=True),
    )
