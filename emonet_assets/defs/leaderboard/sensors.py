import json

import dagster as dg

from emonet_assets.defs.leaderboard.assets import model_registry
from emonet_assets.lib.annotation.landing import new_landed_files
from emonet_assets.lib.leaderboard.registry import MODEL_SIDECAR
from emonet_assets.resources import ProfileResource, StorageResource


@dg.sensor(
    asset_selection=[model_registry],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches the predictions landing zone; each file with new content (by sha256) registers the model "
    "version it holds, whose model_predictions partition then scores on its own (on missing). The same content "
    "landing twice is one version.",
)
def predictions_landing_sensor(
    context: dg.SensorEvaluationContext, storage: StorageResource, profile: ProfileResource
) -> dg.SensorResult:
    store = storage.store()
    seen = json.loads(context.cursor) if context.cursor else {}
    known = {entry["sha256"] for entry in seen.values()}
    cursor, new = new_landed_files(store, profile.leaderboard.landing, seen, known, skip_suffix=MODEL_SIDECAR)
    for sha, path in new:
        context.log.info(f"new predictions file {sha[:12]} from {path}")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=sha) for sha, _ in new], cursor=json.dumps(cursor, sort_keys=True)
    )
