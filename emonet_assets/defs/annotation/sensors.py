import json

import dagster as dg

from emonet_assets.defs.annotation.assets import annotation_batches
from emonet_assets.defs.annotation.partitions import annotation_batch_partitions
from emonet_assets.lib.annotation.landing import file_sha256, list_landing
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
    cursor, new = {}, []
    for landed in list_landing(store, profile.annotation.landing):
        entry = seen.get(landed.path)
        sha = (
            entry["sha256"] if entry and entry["fingerprint"] == landed.fingerprint else file_sha256(store, landed.path)
        )
        cursor[landed.path] = {"fingerprint": landed.fingerprint, "sha256": sha}
        if sha not in known and sha not in new:
            new.append(sha)
            context.log.info(f"new annotation batch {sha[:12]} from {landed.path}")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=sha, run_key=sha) for sha in new],
        dynamic_partitions_requests=[annotation_batch_partitions.build_add_request(new)] if new else [],
        cursor=json.dumps(cursor, sort_keys=True),
    )
